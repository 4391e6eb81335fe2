"""How the pytest plugin's tests (tests/hil/test_plugin.py,
test_plugin_spares.py, test_labgrid.py) run an inner pytest session with
hil.pytest_plugin through pytester, and read the JUnit properties it wrote."""

import xml.etree.ElementTree as ET


def run_plugin(pytester, *args):
    """pytester.runpytest with the plugin, no cache, skip reasons shown, and
    --rootdir the inner session's own folder whatever files its parents hold
    (a setup.py in /tmp made /tmp the rootdir and moved every test id)."""
    return pytester.runpytest("-p", "hil.pytest_plugin", "-p", "no:cacheprovider", "-rsx", "--rootdir",
                              str(pytester.path), *args)


def junit_properties(xml_path):
    """{test name: {property: value}} of a JUnit XML file."""
    return {tc.get("name"): {p.get("name"): p.get("value") for p in tc.iter("property")}
            for tc in ET.parse(xml_path).iter("testcase")}
