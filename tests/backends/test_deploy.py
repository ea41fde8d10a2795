"""deploy/ and docs/deploy.md: the manifests parse and say what the docs promise; the
`loopls serve` arguments and the loopls options they show are ones loopls accepts."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from loopls.engine.server import check_bind
from loopls.engine.server.metrics import ServerMetrics
from loopls.lsp.cli import build_parser
from loopls.lsp.options import parse_options

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"


def _docs(name: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]
    assert all({"apiVersion", "kind", "metadata"} <= d.keys() for d in docs)
    return {d["kind"]: d for d in docs}


def _probe_ports(container: dict) -> set:
    return {container[p]["httpGet"]["port"] for p in ("readinessProbe", "livenessProbe", "startupProbe")}


def test_loopls_serve_deployment() -> None:
    docs = _docs("loopls-serve.yaml")
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"} <= docs.keys()
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    # a GPU per pod
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # probes on /health, on the port the server listens on
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert _probe_ports(container) == {"http"}
    # the arguments are loopls's own, and the bind rule is met by the key from the Secret
    args = build_parser().parse_args(container["args"])
    assert args.command == "serve" and args.port == ports["http"] == 8000
    env = {e["name"]: e for e in container["env"]}
    assert env["LOOPLS_API_KEY"]["valueFrom"]["secretKeyRef"]["name"]
    check_bind(args.host, "key from the Secret")
    # the Service reaches these pods; Prometheus scrapes the right port and path
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8000"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    # autoscaling on a metric the server exports
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    exported = {m.name for m in ServerMetrics(lambda: {}).registry.collect()}
    assert name in exported
    rules = yaml.safe_load(_docs("prometheus-adapter-rules.yaml")["ConfigMap"]["data"]["config.yaml"])
    assert any(name in rule["seriesQuery"] and rule["name"]["as"] == name for rule in rules["rules"])


def test_vllm_cluster_manifest() -> None:
    docs = _docs("vllm-iquest-loop-40b.yaml")
    lws = docs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
    (leader,) = lws["leaderTemplate"]["spec"]["containers"]
    (worker,) = lws["workerTemplate"]["spec"]["containers"]
    gpus = lws["size"] * leader["resources"]["limits"]["nvidia.com/gpu"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == leader["resources"]["limits"]["nvidia.com/gpu"]
    serve = shlex.split(leader["args"][0][leader["args"][0].index("vllm serve"):].replace("\\\n", " "))
    assert serve[2] == "IQuestLab/IQuest-Coder-V1-40B-Loop-Instruct"
    tp = int(serve[serve.index("--tensor-parallel-size") + 1])
    assert tp == gpus and 40 % tp == 0 and 8 % tp == 0  # heads split evenly
    assert "--pipeline-parallel-size" not in serve  # vLLM's Loop model has no pipeline parallelism
    assert serve[serve.index("--distributed-executor-backend") + 1] == "ray"
    assert "$(LWS_LEADER_ADDRESS):6379" in worker["args"][0] and "--port=6379" in leader["args"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert leader[probe]["httpGet"]["path"] == "/health"
    assert docs["Service"]["spec"]["selector"]["role"] == "leader"


def test_the_options_in_the_docs_are_valid() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        options, warning = parse_options(json.loads(block))
        assert warning is None, (block, warning)
    loop = [json.loads(b) for b in blocks if "40B-Loop" in b and "openai" in b]
    assert loop and loop[0]["model"]["name"] == "IQuestLab/IQuest-Coder-V1-40B-Loop-Instruct"


def test_the_serve_commands_in_the_docs_parse() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8").replace("\\\n", " ")
    commands = [shlex.split(line)[1:] for line in text.splitlines() if line.strip().startswith("loopls serve")]
    assert commands
    for argv in commands:
        assert build_parser().parse_args(argv).command == "serve"
