# The Docker stack of docker-compose.yml (seed 000's verbs, plus replay).
# Docker is needed only here; building and testing pgtape needs cargo alone.
COMPOSE ?= docker compose

.PHONY: build run health logs stop clean replay

build:
	$(COMPOSE) build

run:
	$(COMPOSE) up -d --build
	@echo "Grafana http://localhost:3001 (admin/admin), Prometheus http://localhost:9090"
	@echo "proxy postgres://postgres:postgres@localhost:6432/analytics, console: psql -h localhost -p 6432 -U postgres pgtape"

health:
	@curl -fsS http://localhost:9100/health && echo "  proxy" || echo "  proxy: NOT READY"
	@curl -fsS http://localhost:3000/health && echo "  workload" || echo "  workload: NOT READY"
	@curl -fsS http://localhost:9090/-/ready >/dev/null && echo "ok  prometheus" || echo "prometheus: NOT READY"
	@curl -fsS http://localhost:3001/api/health >/dev/null && echo "ok  grafana" || echo "grafana: NOT READY"

logs:
	$(COMPOSE) logs -f proxy workload

replay:
	$(COMPOSE) --profile replay up replay

stop:
	$(COMPOSE) --profile replay stop

clean:
	$(COMPOSE) --profile replay down -v --rmi local
