"""The three-node KRaft cluster's configuration (shared.devstack.kafka_cluster), without a JVM."""

from pathlib import Path

import pytest

from shared.devstack.kafka_cluster import LocalKafkaCluster


def _properties(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _written(cluster: LocalKafkaCluster) -> list[dict[str, str]]:
    cluster.prepare()
    for node in cluster.nodes:
        node.state_dir.mkdir(parents=True, exist_ok=True)
        node._write_properties()
    return [_properties(node.properties_file) for node in cluster.nodes]


def test_every_node_has_its_own_id_and_ports_and_all_vote_in_one_quorum(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(tmp_path, [(9101, 9102), (9103, 9104), (9105, 9106)])

    written = _written(cluster)

    assert [p["node.id"] for p in written] == ["1", "2", "3"]
    voters = "1@127.0.0.1:9102,2@127.0.0.1:9104,3@127.0.0.1:9106"
    assert {p["controller.quorum.voters"] for p in written} == {voters}
    assert [p["listeners"] for p in written] == [
        f"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}"
        for client, controller in ((9101, 9102), (9103, 9104), (9105, 9106))
    ]
    assert cluster.bootstrap_servers == "127.0.0.1:9101,127.0.0.1:9103,127.0.0.1:9105"
    assert {p["process.roles"] for p in written} == {"broker,controller"}


def test_a_restarted_cluster_formats_new_nodes_with_the_id_it_was_first_given(
    tmp_path: Path,
) -> None:
    first = LocalKafkaCluster(tmp_path, port=9200)
    first.prepare()
    again = LocalKafkaCluster(tmp_path, port=9200)
    again.prepare()

    ids = {node.cluster_id for node in (*first.nodes, *again.nodes)}
    assert len(ids) == 1 and None not in ids


def test_topics_and_internal_topics_keep_three_replicas_and_need_two_in_sync(
    tmp_path: Path,
) -> None:
    written = _written(LocalKafkaCluster(tmp_path, port=9300))

    for props in written:
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["unclean.leader.election.enable"] == "false"


def test_a_cluster_that_could_not_survive_one_dead_node_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least three"):
        LocalKafkaCluster(tmp_path, [(9401, 9402), (9403, 9404)])
    with pytest.raises(ValueError, match="min_insync_replicas"):
        LocalKafkaCluster(tmp_path, port=9410, min_insync_replicas=3)
