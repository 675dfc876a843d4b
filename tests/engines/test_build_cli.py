"""`mesc build` without TensorRT: argument refusals first, then the install hint; nothing written."""

import pytest
from click.testing import CliRunner

from exported import export_toy

from mesc.cli import cli
from mesc.errors import MissingDependencyError


def _has_trt():
    try:
        import tensorrt  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return export_toy("skipnet", tmp_path_factory.mktemp("b") / "skipnet", policy=None, verify=False)


@pytest.mark.parametrize("args,match", [
    (["--target", "tx2"], "unknown target 'tx2'; known targets: gtx1080ti, host, orin, xavier"),
    (["--target", "gtx1080ti", "--precision", "fp16"], "no fast FP16"),
    (["--target", "host", "--precision", "int8", "--dla-core", "0"], "has no DLA"),
])
def test_build_refuses_bad_requests_before_loading_tensorrt(pkg, args, match):
    res = CliRunner().invoke(cli, ["build", str(pkg), *args])
    assert res.exit_code == 2 and match in res.output, res.output


@pytest.mark.skipif(_has_trt(), reason="TensorRT is installed here")
def test_build_without_tensorrt_names_the_extra(pkg):
    from mesc.engines.build import build

    before = (pkg / "mesc.json").read_text()
    with pytest.raises(MissingDependencyError, match=r"pip install 'mesc\[trt\]'"):
        build(pkg, "host", "fp32")
    assert (pkg / "mesc.json").read_text() == before and not (pkg / "engines").exists()


def test_list_targets():
    res = CliRunner().invoke(cli, ["build", "--list-targets"])
    assert res.exit_code == 0 and "xavier" in res.output and "sm_61" in res.output
