"""Local infrastructure for ``dormant dev`` and the tests: a private broker, Postgres, RabbitMQ, NATS
(JetStream), OCI registry and OIDC provider, and ports."""

from .broker import MosquittoNotInstalled, MosquittoProcess, find_mosquitto, render_config
from .nats import NatsNotInstalled, NatsServer, find_nats_server
from .ports import free_port, port_accepts
from .postgres import (
    ExternalPostgres,
    LocalPostgres,
    PostgresNotInstalled,
    create_database,
    database_url,
    drop_database,
    postgres_bin_dir,
)
from .processes import live_children
from .rabbitmq import RabbitNode
from .registry import RegistryNotInstalled, RegistryServer, find_registry_server

__all__ = [
    "ExternalPostgres",
    "LocalPostgres",
    "MosquittoNotInstalled",
    "MosquittoProcess",
    "NatsNotInstalled",
    "NatsServer",
    "PostgresNotInstalled",
    "RabbitNode",
    "RegistryNotInstalled",
    "RegistryServer",
    "create_database",
    "database_url",
    "drop_database",
    "find_mosquitto",
    "find_nats_server",
    "find_registry_server",
    "free_port",
    "live_children",
    "port_accepts",
    "postgres_bin_dir",
    "render_config",
]
