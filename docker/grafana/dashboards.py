#!/usr/bin/env python3
"""Writes the Grafana dashboards (proxy, workload, replay) as JSON.

Run `python3 docker/grafana/dashboards.py` after changing a panel; the
files it writes are committed. tests/observe.rs checks that every metric a
dashboard queries is one pgtape exports (src/metrics/names.rs).
"""
import json
import os

DS = {"type": "prometheus", "uid": "prometheus"}


def panel(pid, title, exprs, unit="short", x=0, y=0, w=12, h=8, kind="timeseries"):
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": e, "legendFormat": l}
            for i, (e, l) in enumerate(exprs)
        ],
    }


def q(name, by, label=None):
    """p50/p95/p99 of a histogram, by `by` labels."""
    return [
        (
            f"histogram_quantile({p}, sum by (le{', ' + by if by else ''}) (rate({name}_bucket[1m])))",
            f"p{int(p * 100)} {label or ('{{' + by + '}}' if by else '')}".strip(),
        )
        for p in (0.5, 0.95, 0.99)
    ]


def dashboard(uid, title, panels):
    laid = []
    for i, p in enumerate(panels):
        p = dict(p)
        p["gridPos"] = {"x": (i % 2) * 12, "y": (i // 2) * 8, "w": 12, "h": 8}
        p["id"] = i + 1
        laid.append(p)
    return {
        "uid": uid,
        "title": title,
        "tags": ["pgtape"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "panels": laid,
    }


proxy = dashboard("pgtape-proxy", "pgtape proxy", [
    panel(0, "Statements per second", [
        ("sum by (protocol) (rate(pgtape_proxy_statements_total[1m]))", "{{protocol}}")]),
    panel(0, "Statement latency", q("pgtape_proxy_statement_duration_seconds", ""), unit="s"),
    panel(0, "Connections", [
        ("pgtape_proxy_client_connections", "clients"),
        ("pgtape_proxy_upstream_connections", "upstream"),
        ("rate(pgtape_proxy_client_connections_total[1m])", "new clients/s"),
        ("rate(pgtape_proxy_upstream_connect_errors_total[1m])", "upstream connect errors/s"),
        ("sum by (result) (rate(pgtape_proxy_admin_connections_total[1m]))", "admin console {{result}}/s")]),
    panel(0, "Bytes per second", [
        ("sum by (direction) (rate(pgtape_proxy_bytes_total[1m]))", "{{direction}}")], unit="Bps"),
    panel(0, "Errors by SQLSTATE class", [
        ("sum by (class) (rate(pgtape_proxy_statement_errors_total[1m]))", "{{class}}")]),
    panel(0, "Capture records", [
        ("rate(pgtape_capture_records_written_total[1m])", "written/s"),
        ("rate(pgtape_capture_records_dropped_total[1m])", "dropped/s"),
        ("rate(pgtape_capture_records_paused_total[1m])", "skipped (paused)/s")]),
    panel(0, "Capture queue and files", [
        ("pgtape_capture_queue_depth", "queue depth"),
        ("pgtape_capture_segments_total", "segments"),
        ("pgtape_capture_files_total", "files"),
        ("pgtape_capture_paused", "paused")]),
    panel(0, "Ready", [("pgtape_ready{job=\"pgtape-proxy\"}", "ready"),
                       ("pgtape_build_info{job=\"pgtape-proxy\"}", "{{version}}")]),
])

workload = dashboard("pgtape-workload", "pgtape workload (analytics)", [
    panel(0, "Operations per second by kind", [
        ("sum by (kind) (rate(pgtape_workload_operations_total[1m]))", "{{kind}}")]),
    panel(0, "Events per second by type", [
        ("sum by (event_type) (rate(pgtape_workload_events_total[1m]))", "{{event_type}}")]),
    panel(0, "Latency by kind (p95)", [
        ("histogram_quantile(0.95, sum by (le, kind) (rate(pgtape_workload_operation_duration_seconds_bucket[1m])))", "{{kind}}")], unit="s"),
    panel(0, "Latency (all kinds)", q("pgtape_workload_operation_duration_seconds", ""), unit="s"),
    panel(0, "Success rate", [
        ("sum(rate(pgtape_workload_operations_total{outcome=\"ok\"}[1m])) / sum(rate(pgtape_workload_operations_total[1m]))", "success")], unit="percentunit"),
    panel(0, "Pool utilisation", [
        ("pgtape_workload_pool_connections", "{{state}}"),
        ("pgtape_workload_pool_max_connections", "max"),
        ("sum(pgtape_workload_pool_connections{state=\"busy\"}) / sum(pgtape_workload_pool_max_connections)", "utilisation")]),
    panel(0, "Pool acquire time (p95)", [
        ("histogram_quantile(0.95, sum by (le) (rate(pgtape_workload_pool_acquire_seconds_bucket[1m])))", "p95")], unit="s"),
    panel(0, "Cache hit ratio", [
        ("sum(rate(pgtape_workload_cache_lookups_total{result=\"hit\"}[1m])) / sum(rate(pgtape_workload_cache_lookups_total[1m]))", "hit ratio")], unit="percentunit"),
    panel(0, "Redis latency", q("pgtape_workload_redis_duration_seconds", "op"), unit="s"),
    panel(0, "Backlog", [("rate(pgtape_workload_backlogged_total[1m])", "backlogged/s")]),
    panel(0, "Active organisations", [("pgtape_workload_active_organizations", "active")], kind="stat"),
    panel(0, "Conversion rate", [("pgtape_workload_conversion_ratio", "conversions per page view")], unit="percentunit", kind="stat"),
])

replay = dashboard("pgtape-replay", "pgtape replay", [
    panel(0, "Progress", [("pgtape_replay_progress_ratio", "progress")], unit="percentunit", kind="gauge"),
    panel(0, "Statements per second by side", [
        ("sum by (side) (rate(pgtape_replay_statements_total[1m]))", "{{side}}")]),
    panel(0, "Latency by side (p95)", [
        ("histogram_quantile(0.95, sum by (le, side) (rate(pgtape_replay_statement_duration_seconds_bucket[1m])))", "{{side}}")], unit="s"),
    panel(0, "Lag behind schedule (p95)", [
        ("histogram_quantile(0.95, sum by (le, side) (rate(pgtape_replay_lag_seconds_bucket[1m])))", "{{side}} lag"),
        ("histogram_quantile(0.95, sum by (le, side) (rate(pgtape_replay_delay_seconds_bucket[1m])))", "{{side}} replayer's delay")], unit="s"),
    panel(0, "Waits for order (--order commit, p95)", [
        ("histogram_quantile(0.95, sum by (le, side) (rate(pgtape_replay_order_wait_seconds_bucket[1m])))", "{{side}} wait"),
        ("sum by (side) (rate(pgtape_replay_order_released_total[1m]))", "{{side}} released/s")], unit="s"),
    panel(0, "Errors by side and class", [
        ("sum by (side, class) (rate(pgtape_replay_errors_total[1m]))", "{{side}} {{class}}")]),
    panel(0, "Results differing from the capture, by side", [
        ("sum by (side) (rate(pgtape_replay_differing_total[1m]))", "{{side}}")]),
    panel(0, "Sessions", [("pgtape_replay_sessions_active", "{{side}}"),
                          ("pgtape_replay_statements_planned", "planned statements")]),
    panel(0, "Ready", [("pgtape_ready{job=\"pgtape-replay\"}", "ready"),
                       ("pgtape_build_info{job=\"pgtape-replay\"}", "{{version}}")]),
])

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")
for name, d in (("proxy", proxy), ("workload", workload), ("replay", replay)):
    with open(os.path.join(here, f"{name}.json"), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
