"""The ground's region address base (ground/regions.py REGION_CLUSTERS, with
region_cluster and region_of) is the firmware's (node/config.py
_REGION_CLUSTERS): a region's electors share the cluster number the node's
MarketConfig computes, and every ground module that routes, checks or
severs a region's frames finds the region from that number (docs/MARKET.md)."""

from node import config

from ground import regions


def test_the_grounds_region_base_is_the_firmwares():
    assert regions.REGION_CLUSTERS == config._REGION_CLUSTERS


def test_a_regions_cluster_number_is_the_one_its_nodes_use_and_converts_back():
    for region in (0, 1, 7, 0x1FE):
        assert regions.region_cluster(region) == config.MarketConfig([1, 2, 3], [1, 2, 3], (1,) * 8, region=region).region_cluster
        assert regions.region_of(regions.region_cluster(region)) == region


def test_an_ordinary_cluster_is_no_regions_address():
    assert regions.region_of(0) is None
    assert regions.region_of(regions.REGION_CLUSTERS - 1) is None
