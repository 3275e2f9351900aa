"""The local platform's pure parts."""

from shared.devstack.kafka import _new_cluster_id


def test_local_kafka_cluster_ids_never_look_like_command_line_options():
    ids = [_new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
