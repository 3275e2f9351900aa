"""Kafka plumbing shared by every service: client settings, the idempotent producer, topics."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import SecretStr

from shared.events.catalogue import AUTH_REVOCATIONS
from shared.registry import SERVICES

if TYPE_CHECKING:
    from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = "itsm.deadletter"

# Every topic the platform uses and its partition count, the one place to change either: the
# topic each service of the registry publishes, then the topics every service shares.
DEFAULT_PARTITIONS = 6
TOPICS: dict[str, int] = {
    **{s.publishes: DEFAULT_PARTITIONS for s in SERVICES if s.publishes is not None},
    DEAD_LETTER_TOPIC: DEFAULT_PARTITIONS,
    # Small and read whole by every process at start-up: one partition, compacted by key.
    AUTH_REVOCATIONS: 1,
}
# Topic-level configs that differ from the broker's defaults.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    AUTH_REVOCATIONS: {"cleanup.policy": "compact"},
}


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
# The keyword arguments of aiokafka clients that security_options() sets.
SECURITY_KEYS = frozenset(
    {
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "ssl_context",
    }
)
_HIDDEN = "**********"


class KafkaConfigError(ValueError):
    """Kafka connection settings that cannot work; the message names the variables to fix."""


class KafkaOptions(dict[str, Any]):
    """Keyword arguments for aiokafka clients (`AIOKafkaConsumer(topic, **options, ...)`).

    repr() and str() hide the SASL password, so the options may be logged or end up in a
    traceback; redacted() is a plain copy, also without the password, for structured logs.
    """

    def redacted(self) -> dict[str, Any]:
        """A copy with the password replaced by asterisks."""
        shown = dict(self)
        if shown.get("sasl_plain_password") is not None:
            shown["sasl_plain_password"] = _HIDDEN
        return shown

    def __repr__(self) -> str:
        return f"KafkaOptions({self.redacted()!r})"

    __str__ = __repr__


def _variable(name: str, env_prefix: str, *, global_fallback: bool) -> str:
    variable = f"{env_prefix}KAFKA_{name}"
    if global_fallback and env_prefix:
        return f"{variable} or KAFKA_{name}"
    return variable


def _ssl_context(cafile: str | os.PathLike[str] | None, variable: str) -> ssl.SSLContext:
    if cafile is not None and not Path(cafile).is_file():
        raise KafkaConfigError(f"Kafka CA file {os.fspath(cafile)} ({variable}) is not a file")
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise KafkaConfigError(
            f"Kafka CA file {os.fspath(cafile or '')} ({variable}) is not a usable PEM CA "
            f"bundle: {exc}"
        ) from exc
    return context


def security_options(
    protocol: str = "PLAINTEXT",
    *,
    sasl_mechanism: str = "SCRAM-SHA-512",
    username: str | None = None,
    password: str | SecretStr | None = None,
    cafile: str | os.PathLike[str] | None = None,
    env_prefix: str = "",
) -> KafkaOptions:
    """The security part of an aiokafka client's keyword arguments, checked for consistency.

    PLAINTEXT adds nothing; SSL is TLS verified against `cafile` (the system's CAs without
    one); SASL_PLAINTEXT and SASL_SSL authenticate with SCRAM (`sasl_mechanism`) as
    `username`/`password`, SASL_SSL over TLS. A combination that cannot work raises
    KafkaConfigError naming the environment variables to fix (`<env_prefix>KAFKA_...`):
    SASL without a username or password, credentials or a CA file that the protocol would
    silently ignore, an unknown protocol or mechanism, a CA file that is missing or not PEM.
    """
    secret = password.get_secret_value() if isinstance(password, SecretStr) else password
    if protocol not in SECURITY_PROTOCOLS:
        variable = _variable("SECURITY_PROTOCOL", env_prefix, global_fallback=True)
        raise KafkaConfigError(
            f"unknown Kafka security protocol {protocol!r} ({variable}): "
            f"use one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    options = KafkaOptions(security_protocol=protocol)
    user_var = _variable("SASL_USERNAME", env_prefix, global_fallback=False)
    password_var = _variable("SASL_PASSWORD", env_prefix, global_fallback=False)
    protocol_var = _variable("SECURITY_PROTOCOL", env_prefix, global_fallback=True)
    if protocol.startswith("SASL_"):
        if sasl_mechanism not in SASL_MECHANISMS:
            variable = _variable("SASL_MECHANISM", env_prefix, global_fallback=True)
            raise KafkaConfigError(
                f"unsupported SASL mechanism {sasl_mechanism!r} ({variable}): "
                f"use one of {', '.join(SASL_MECHANISMS)}"
            )
        missing = [
            name for name, value in ((user_var, username), (password_var, secret)) if not value
        ]
        if missing:
            raise KafkaConfigError(
                f"Kafka security protocol {protocol} authenticates with {sasl_mechanism}: "
                f"set {' and '.join(missing)}"
            )
        options.update(
            sasl_mechanism=sasl_mechanism, sasl_plain_username=username, sasl_plain_password=secret
        )
    elif username or secret:
        given = [name for name, value in ((user_var, username), (password_var, secret)) if value]
        raise KafkaConfigError(
            f"{' and '.join(given)} set but the Kafka security protocol is {protocol} "
            f"({protocol_var}), which would not use them: set it to SASL_SSL (or SASL_PLAINTEXT)"
        )
    if protocol.endswith("SSL"):
        cafile_var = _variable("SSL_CAFILE", env_prefix, global_fallback=True)
        options["ssl_context"] = _ssl_context(cafile, cafile_var)
    elif cafile is not None:
        cafile_var = _variable("SSL_CAFILE", env_prefix, global_fallback=True)
        raise KafkaConfigError(
            f"{cafile_var} is set but the Kafka security protocol is {protocol} ({protocol_var}),"
            " which does not use TLS: set it to SASL_SSL (or SSL)"
        )
    return options


def kafka_options(settings: ServiceSettings) -> KafkaOptions:
    """Keyword arguments for any aiokafka client of a service, from its settings.

    Where the brokers are, the client id, and how to authenticate and encrypt
    (`<PREFIX>_KAFKA_SECURITY_PROTOCOL`, `..._SASL_MECHANISM`, `..._SASL_USERNAME`,
    `..._SASL_PASSWORD`, `..._SSL_CAFILE`; see security_options()):

        consumer = AIOKafkaConsumer(topic, **kafka_options(settings), group_id="...")
        producer = create_producer(bootstrap, client_id, security=kafka_options(settings))
        broker = KafkaBroker(bootstrap_list(bootstrap), security=broker_security(...))

    Raises KafkaConfigError, naming the variables to fix, for settings that cannot work (for
    example SASL_SSL without a username or password). The result's repr hides the password.
    """
    security = security_options(
        settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        cafile=settings.kafka_ssl_cafile,
        env_prefix=str(settings.model_config.get("env_prefix") or ""),
    )
    options = client_config(settings.kafka_bootstrap_servers, settings.client_id, security)
    log.debug("kafka client options", extra={"kafka": options.redacted()})
    return options


def broker_security(options: Mapping[str, Any]) -> BaseSecurity | None:
    """faststream's security object for `KafkaBroker(security=...)` from kafka_options() or
    security_options(): None for PLAINTEXT, TLS for SSL, SCRAM (over TLS for SASL_SSL)."""
    protocol = options.get("security_protocol", "PLAINTEXT")
    context: ssl.SSLContext | None = options.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    if protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
        raise KafkaConfigError(f"unknown Kafka security protocol {protocol!r}")
    scram = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256}.get(
        options.get("sasl_mechanism", "")
    )
    if scram is None:
        raise KafkaConfigError(f"unsupported SASL mechanism {options.get('sasl_mechanism')!r}")
    use_ssl = protocol == "SASL_SSL"
    return scram(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        ssl_context=context if use_ssl else None,
        use_ssl=use_ssl,
    )


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """ "host:port,host:port" as a list of "host:port": faststream's KafkaBroker hands a string
    to aiokafka as one host, so a cluster's comma-separated servers must be split first."""
    return [server.strip() for server in bootstrap_servers.split(",") if server.strip()]


def client_config(
    bootstrap_servers: str, client_id: str, security: Mapping[str, Any] | None = None
) -> KafkaOptions:
    """Connection settings common to producers, consumers and admin clients.

    `security` is what security_options() or kafka_options() returns; only its security keys
    are used, so the explicit servers and client id always win.
    """
    chosen = {k: v for k, v in (security or {}).items() if k in SECURITY_KEYS}
    return KafkaOptions(bootstrap_servers=bootstrap_servers, client_id=client_id, **chosen)


def create_producer(
    bootstrap_servers: str, client_id: str, *, security: Mapping[str, Any] | None = None
) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (no loss, no reordering).

    `security`: see client_config(); without it the producer connects in PLAINTEXT.
    """
    return AIOKafkaProducer(
        **client_config(bootstrap_servers, client_id, security),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
    )


async def ensure_topics(
    bootstrap_servers: str,
    topics: dict[str, int] | None = None,
    replication_factor: int = 1,
    *,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the platform's topics that do not exist yet; return the names created.

    `security`: see client_config(); the user needs the right to describe and create topics.
    """
    wanted = TOPICS if topics is None else topics
    admin = AIOKafkaAdminClient(**client_config(bootstrap_servers, "itsm-admin", security))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=TOPIC_CONFIGS.get(name, {}),
            )
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another process may create one between the listing and now.
            with contextlib.suppress(TopicAlreadyExistsError):
                response = await admin.create_topics(missing)
                # The broker answers per topic; aiokafka does not raise for those errors.
                failed = [
                    f"{topic}: {message or f'error {code}'}"
                    for topic, code, *rest in response.topic_errors
                    for message in [rest[0] if rest else None]
                    if code not in (0, TopicAlreadyExistsError.errno)
                ]
                if failed:
                    raise RuntimeError("could not create topics: " + "; ".join(failed))
            log.info("created topics", extra={"topics": [t.name for t in missing]})
        return [t.name for t in missing]
    finally:
        await admin.close()


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags of the deploy commands, defaulting to the installation-wide
    variables KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
    KAFKA_SASL_USERNAME and KAFKA_SSL_CAFILE (the password has no flag: see connection_from)."""
    env = os.environ
    parser.add_argument("--bootstrap-servers", default=env.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument(
        "--security-protocol",
        choices=SECURITY_PROTOCOLS,
        default=env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
    )
    parser.add_argument(
        "--sasl-mechanism",
        choices=SASL_MECHANISMS,
        default=env.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
    )
    parser.add_argument(
        "--sasl-username",
        default=env.get("KAFKA_SASL_USERNAME"),
        help="SCRAM user (its password is read from KAFKA_SASL_PASSWORD)",
    )
    parser.add_argument("--ssl-cafile", default=env.get("KAFKA_SSL_CAFILE") or None)


def connection_from(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[str, KafkaOptions]:
    """The bootstrap servers and security options from add_connection_arguments()' flags and
    KAFKA_SASL_PASSWORD (a flag would show the password in the process list); a setting that
    cannot work exits through parser.error() naming what to fix."""
    if not args.bootstrap_servers:
        parser.error("--bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS is required")
    try:
        security = security_options(
            args.security_protocol,
            sasl_mechanism=args.sasl_mechanism,
            username=args.sasl_username,
            password=os.environ.get("KAFKA_SASL_PASSWORD"),
            cafile=args.ssl_cafile,
        )
    except KafkaConfigError as exc:
        parser.error(str(exc))
    return str(args.bootstrap_servers), security


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m shared.kafka create-topics`: create every platform topic that is missing.

    The connection comes from flags or the installation-wide variables KAFKA_BOOTSTRAP_SERVERS,
    KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SSL_CAFILE; the
    password only from KAFKA_SASL_PASSWORD (a flag would show it in the process list).
    """
    import asyncio

    parser = argparse.ArgumentParser(prog="python -m shared.kafka")
    parser.add_argument("command", choices=["create-topics"])
    parser.add_argument("--replication-factor", type=int, default=1)
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    bootstrap, security = connection_from(parser, args)
    created = asyncio.run(
        ensure_topics(bootstrap, None, args.replication_factor, security=security)
    )
    print("created: " + (", ".join(created) or "nothing (all topics exist)"))


if __name__ == "__main__":
    main()
