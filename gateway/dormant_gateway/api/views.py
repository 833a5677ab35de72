"""JSON views of catalog and gateway records, in the API's camelCase."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dormant_catalog import AliasRecord, DeploymentRecord, DeploymentStatus, VersionRecord
from dormant_catalog.gateway import FunctionRecord, InvocationRecord, TriggerMetrics, TriggerRecord


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def function_view(record: FunctionRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "runtime": record.runtime,
        "handler": record.handler,
        "memorySize": record.memory_mb,
        "timeout": record.timeout_s,
        "environment": record.environment,
        "tags": record.tags,
        "description": record.description,
        "concurrency": record.concurrency,
        "owner": record.owner,
        "createdAt": _time(record.created_at),
        "updatedAt": _time(record.updated_at),
        "deletedAt": _time(record.deleted_at),
    }


def version_view(record: VersionRecord) -> dict[str, Any]:
    interface = record.schema_definition
    functions = interface.get("functions") if isinstance(interface, dict) else None
    return {
        "function": record.app_name,
        "version": record.version,
        "image": record.app_layer_image,
        "sha256": record.app_layer_image.rpartition("@sha256:")[2] or None,
        "baseImage": record.base_image,
        "interfaceHash": record.interface_hash,
        "functions": sorted(functions) if isinstance(functions, dict) else [],
        "status": record.status,
        "createdAt": _time(record.created_at),
        "createdBy": record.created_by,
    }


def alias_view(
    name: str, alias: str, weights: dict[int, int], record: AliasRecord | None = None
) -> dict[str, Any]:
    return {
        "function": name,
        "alias": alias,
        "weights": {str(v): w for v, w in sorted(weights.items())},
        "updatedAt": _time(record.updated_at) if record else None,
    }


def deployment_view(record: DeploymentRecord | None, status: DeploymentStatus) -> dict[str, Any]:
    return {
        "functionName": status.app_name,
        "version": status.target_version,
        "replicas": status.replicas,
        "serving": status.serving,
        "state": status.state,
        "reason": status.reason,
        "strategy": record.strategy if record else None,
        "updatedAt": _time(record.updated_at) if record else None,
        "deployedBy": record.deployed_by if record else None,
    }


def trigger_view(record: TriggerRecord, metrics: TriggerMetrics | None) -> dict[str, Any]:
    return {
        "id": record.trigger_id,
        "function": record.function_name,
        "type": record.kind,
        "target": record.target,
        "config": record.config,
        "enabled": record.enabled,
        "createdAt": _time(record.created_at),
        "createdBy": record.created_by,
        "lastError": record.last_error,
        "lastErrorAt": _time(record.last_error_at),
        "metrics": {
            "fired": metrics.fired if metrics else 0,
            "succeeded": metrics.succeeded if metrics else 0,
            "failed": metrics.failed if metrics else 0,
            "retried": metrics.retried if metrics else 0,
            "deadLettered": metrics.dead_lettered if metrics else 0,
            "lastFiredAt": _time(metrics.last_fired_at) if metrics else None,
        },
    }


def invocation_view(record: InvocationRecord) -> dict[str, Any]:
    return {
        "callId": record.call_id,
        "function": f"{record.app_name}.{record.function}",
        "version": record.version,
        "alias": record.alias,
        "status": record.status,
        "attempts": record.attempts,
        "maxAttempts": record.max_attempts,
        "result": record.result,
        "error": record.error,
        "source": record.source,
        "triggerId": record.trigger_id,
        "scheduledAt": _time(record.scheduled_at),
        "nextAttemptAt": _time(record.next_attempt_at) if record.status == "queued" else None,
        "createdAt": _time(record.created_at),
        "updatedAt": _time(record.updated_at),
        "finishedAt": _time(record.finished_at),
    }
