#!/usr/bin/env python3
"""Check the Kubernetes manifests offline: they render, they are valid Kubernetes, and they keep
the project's own promises.

    python3 deploy/kubernetes/check.py

No cluster is needed, and none is used:

1. Render: `kubectl kustomize` renders the base and every overlay (kubectl must be on PATH).
2. Validate: every rendered object, strictly (an unknown field is an error), against the
   schemas of two supported Kubernetes minor versions (SCHEMA_VERSIONS), with
   kubernetes-validate, pinned below and installed into target/kubernetes/venv. An operator's
   custom resource (CloudNativePG's Cluster), which no schema here knows, is held by the
   project's invariants instead.
3. Invariants: every overlay is held to the rules in INVARIANTS. Then each rule is broken on
   purpose in a copy of the dev overlay (BREAKAGES) or of the production-postgres one
   (CLUSTER_BREAKAGES), and the check must report it: a rule that cannot fail proves nothing.
4. Probes, for real: each portbound container's rendered settings (ConfigMap and Secret values
   included) start the real binary on 127.0.0.1, and every path its probes name must answer
   200. This also proves the rendered settings are valid configuration for the binaries. The
   certificates a mounted cert-manager Secret would hold are made here by the upstream's
   `certs` subcommand, and an HTTPS port is probed over HTTPS, verified.

Prints the objects of each render by kind. Exit status 0 when everything holds, 1 otherwise.
"""

import base64
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV = ROOT / "target" / "kubernetes" / "venv"
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
# Two minor versions the Kubernetes project supports as this is written.
SCHEMA_VERSIONS = ["1.36.0", "1.37.0"]
RENDERS = ["base", "overlays/dev", "overlays/swap-b", "overlays/redis", "overlays/postgres",
           "overlays/production-postgres", "overlays/tls"]
SWAPS = ["overlays/swap-b", "overlays/redis", "overlays/postgres"]

# Kinds that no schema here knows (an operator's custom resources): kubernetes-validate cannot
# check them, so the project's own invariants hold them instead (clusters_are_highly_available).
CUSTOM_API_GROUPS = ["postgresql.cnpg.io/", "cert-manager.io/"]

# What the binaries do, as the manifests must know it (the binaries' own defaults and rules).
UID = 10001
CONSUMER_IMAGE, UPSTREAM_IMAGE = "portbound-consumer", "portbound-upstream"
PROBE_PATHS = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
DEFAULTS = {"SHUTDOWN_DELAY": "0s", "SHUTDOWN_TIMEOUT": "5s", "UPSTREAM_TIMEOUT": "2s"}
# The consumer's last click flush gets one upstream deadline plus this (LAST_FLUSH_MARGIN in
# services/consumer/src/lib.rs).
LAST_FLUSH_MARGIN = 1.0


def say(text):
    print(f"kubernetes: {text}", flush=True)


def into_venv():
    """Re-runs this script in the venv that has the pinned kubernetes-validate."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    wanted = KUBERNETES_VALIDATE.split("==")[1]
    shown = subprocess.run([str(python), "-m", "pip", "show", "kubernetes-validate"],
                           capture_output=True, text=True) if python.exists() else None
    if shown is None or f"Version: {wanted}\n" not in shown.stdout:
        say(f"installing {KUBERNETES_VALIDATE} into {VENV.relative_to(ROOT)}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", KUBERNETES_VALIDATE],
                       check=True)
    os.execv(python, [str(python), __file__, *sys.argv[1:]])


def render(directory):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubernetes: kubectl is not on PATH. This check renders the manifests "
                         "with `kubectl kustomize` (checked with kubectl 1.32); install kubectl "
                         "and run it again.")
    result = subprocess.run([kubectl, "kustomize", str(HERE / directory)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"kubernetes: {directory} does not render:\n{result.stderr}")
    import yaml

    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(name, objects):
    """Strict schema validation; the problems found, one line each."""
    import kubernetes_validate

    problems = []
    for version in SCHEMA_VERSIONS:
        for obj in objects:
            if any(obj["apiVersion"].startswith(group) for group in CUSTOM_API_GROUPS):
                continue
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except Exception as error:  # every kind of failure is reported, not raised
                message = getattr(error, "message", None) or str(error)
                where = "/".join(str(part) for part in getattr(error, "path", []))
                problems.append(f"{name}: {ident(obj)} is not valid Kubernetes {version}: "
                                f"{message}{f' at {where}' if where else ''}")
    return problems


# The rendered objects, read the way Kubernetes reads them.

def ident(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def of_kind(objects, *kinds):
    return [obj for obj in objects if obj["kind"] in kinds]


def workloads(objects):
    return of_kind(objects, "Deployment", "StatefulSet")


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"].get("labels", {})


def selects(match_labels, labels):
    """A label selector's matchLabels (nothing else is used here) against a pod's labels."""
    return all(labels.get(key) == value for key, value in match_labels.items())


def image_name(container):
    return container["image"].rsplit("/", 1)[-1].split(":")[0]


def ours(objects):
    """(workload, container) for every portbound container."""
    return [(w, c) for w in workloads(objects) for c in pod_spec(w)["containers"]
            if image_name(c) in (CONSUMER_IMAGE, UPSTREAM_IMAGE)]


def named(objects, kind, name):
    found = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return found[0] if found else None


def environment(objects, container):
    """Each variable the container gets: name -> (source, value), source being 'literal',
    'ConfigMap/NAME' or 'Secret/NAME'. Later entries win, as in Kubernetes (env over envFrom)."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            config = named(objects, "ConfigMap", name) or {"data": {}}
            env.update({key: (f"ConfigMap/{name}", value)
                        for key, value in config.get("data", {}).items()})
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            secret = named(objects, "Secret", name) or {"data": {}}
            env.update({key: (f"Secret/{name}", decode(value))
                        for key, value in secret.get("data", {}).items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = ("literal", var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            secret = named(objects, "Secret", ref["name"])
            value = secret and secret.get("data", {}).get(ref["key"])
            env[var["name"]] = (f"Secret/{ref['name']}", None if value is None else decode(value))
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            config = named(objects, "ConfigMap", ref["name"])
            env[var["name"]] = (f"ConfigMap/{ref['name']}",
                                config and config.get("data", {}).get(ref["key"]))
        else:
            env[var["name"]] = ("field", None)
    return env


def decode(value):
    return base64.b64decode(value).decode()


def setting(env, name):
    return env.get(name, (None, DEFAULTS.get(name)))[1]


def seconds(duration):
    """A duration as the binaries read it (humantime): `500ms`, `5s`, `1m`, `1m30s`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", duration)
    if not parts or "".join(number + unit for number, unit in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(int(number) * units[unit] for number, unit in parts)


def container_port(container, port):
    """A probe's or Service's port, by number or by name, as the container's port number."""
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return declared["containerPort"]
    return None


def the_consumer(objects):
    return [w for w, c in ours(objects) if image_name(c) == CONSUMER_IMAGE]


# The invariants: each takes the rendered objects and returns the problems it finds.

def probes_name_what_the_binaries_serve(objects):
    problems = []
    for workload, container in ours(objects):
        where = f"{ident(workload)} container {container['name']}"
        port = setting(environment(objects, container), "PORT")
        for probe, path in PROBE_PATHS.items():
            spec = container.get(probe)
            if spec is None:
                problems.append(f"{where} has no {probe}")
                continue
            get = spec.get("httpGet")
            if get is None:
                problems.append(f"{where}: the {probe} is not an HTTP GET of {path}")
                continue
            if get.get("path") != path:
                problems.append(f"{where}: the {probe} asks {get.get('path')}, not {path}")
            number = container_port(container, get.get("port"))
            if port is None or str(number) != str(port):
                problems.append(f"{where}: the {probe} asks port {get.get('port')} ({number}), "
                                f"but PORT is {port}")
    return problems


def grace_covers_the_drain(objects):
    problems = []
    for workload, container in ours(objects):
        where = f"{ident(workload)} container {container['name']}"
        env = environment(objects, container)
        try:
            delay = seconds(setting(env, "SHUTDOWN_DELAY"))
            drain = delay + seconds(setting(env, "SHUTDOWN_TIMEOUT"))
            if image_name(container) == CONSUMER_IMAGE:
                drain += seconds(setting(env, "UPSTREAM_TIMEOUT")) + LAST_FLUSH_MARGIN
        except (TypeError, ValueError) as error:
            problems.append(f"{where}: {error}")
            continue
        grace = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        if grace <= drain:
            problems.append(f"{where}: terminationGracePeriodSeconds {grace} does not exceed "
                            f"the drain of {drain:g}s (delay, timeout and any last flush)")
        readiness = container.get("readinessProbe", {})
        noticed = readiness.get("periodSeconds", 10) * readiness.get("failureThreshold", 3)
        if delay < noticed:
            problems.append(f"{where}: SHUTDOWN_DELAY {delay:g}s is shorter than the "
                            f"{noticed}s the readiness probe takes to see the pod unready")
    return problems


def pods_are_hardened(objects):
    problems = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{ident(workload)}: the service-account token is mounted")
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{ident(workload)} container {container['name']}"
            own = container.get("securityContext", {})

            def effective(key):
                return own.get(key, pod.get(key))

            if effective("runAsNonRoot") is not True or effective("runAsUser") != UID:
                problems.append(f"{where}: not run as the non-root uid {UID}")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccomp profile is not RuntimeDefault")
            if own.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: the root filesystem is writable")
            if own.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation is allowed")
            if own.get("privileged"):
                problems.append(f"{where}: privileged")
            capabilities = own.get("capabilities", {})
            if "ALL" not in capabilities.get("drop", []) or capabilities.get("add"):
                problems.append(f"{where}: capabilities are not all dropped")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(kind, {}))
                if missing:
                    problems.append(f"{where}: no {kind} for {', '.join(sorted(missing))}")
    return problems


# Each credential and the container that must read it from a Secret.
SECRET_SETTINGS = {CONSUMER_IMAGE: ["UPSTREAM_URL"], UPSTREAM_IMAGE: ["ACCESS_TOKEN"]}


def credentials_come_from_secrets(objects):
    problems = []
    for workload, container in ours(objects):
        env = environment(objects, container)
        where = f"{ident(workload)} container {container['name']}"
        configs = [named(objects, "ConfigMap", source["configMapRef"]["name"]) or {}
                   for source in container.get("envFrom", []) if "configMapRef" in source]
        for name in SECRET_SETTINGS[image_name(container)]:
            source, value = env.get(name, (None, None))
            if source is None or not source.startswith("Secret/"):
                problems.append(f"{where}: {name} comes from {source or 'nowhere'}, not a Secret")
            elif value is None and cluster_app_secret(objects, container) is None:
                # A Cluster's application Secret is the operator's to write, not rendered here.
                problems.append(f"{where}: {name} names {source}, which has no such key here")
            # Even where the Secret wins, a copy in a ConfigMap it reads is in plain sight.
            problems += [f"{where}: {ident(config)} holds {name} too" for config in configs
                         if name in config.get("data", {})]
    return problems


def backing_services(objects):
    """(Service, the workloads it selects) for every Service but the consumer's own: the
    backing services, which only the consumer may reach."""
    consumers = [pod_labels(w) for w in the_consumer(objects)]
    found = []
    for service in of_kind(objects, "Service"):
        selector = service["spec"].get("selector", {})
        chosen = [w for w in workloads(objects) if selects(selector, pod_labels(w))]
        if chosen and not any(selects(selector, labels) for labels in consumers):
            found.append((service, chosen))
    return found


def only_the_consumer_reaches_the_backends(objects):
    problems = []
    consumers = [pod_labels(w) for w in the_consumer(objects)]
    if not consumers:
        return ["no consumer Deployment is rendered"]
    policies = of_kind(objects, "NetworkPolicy")
    for service, chosen in backing_services(objects):
        for workload in chosen:
            labels = pod_labels(workload)
            guarding = [p for p in policies if "Ingress" in p["spec"].get("policyTypes", [])
                        and selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)]
            if not guarding:
                problems.append(f"no NetworkPolicy selects the pods of {ident(workload)} "
                                f"behind Service/{service['metadata']['name']}")
            ports = {container_port(c, p["targetPort"]) for c in pod_spec(workload)["containers"]
                     for p in service["spec"]["ports"]} - {None}
            for policy in guarding:
                for rule in policy["spec"].get("ingress", []):
                    peers = rule.get("from", [])
                    where = f"{ident(policy)} (for {ident(workload)})"
                    if not peers:
                        problems.append(f"{where} admits every source")
                    for peer in peers:
                        match = (peer.get("podSelector") or {}).get("matchLabels")
                        if set(peer) != {"podSelector"} or not match:
                            problems.append(f"{where} admits {peer}, not only pods by label")
                        elif not all(selects(match, labels) for labels in consumers) or any(
                                selects(match, pod_labels(w)) for w in workloads(objects)
                                if pod_labels(w) not in consumers):
                            problems.append(f"{where} admits pods {match}, not just the consumer")
                    allowed = {p.get("port") for p in rule.get("ports", [])}
                    if not allowed or not allowed <= ports:
                        problems.append(f"{where} admits ports {sorted(allowed) or 'all'}, "
                                        f"not just {sorted(ports)}")
    return problems


def the_consumer_scales_without_a_gap(objects):
    problems = []
    for workload in the_consumer(objects):
        name, spec, labels = ident(workload), workload["spec"], pod_labels(workload)
        if spec.get("replicas", 1) < 2:
            problems.append(f"{name}: fewer than 2 replicas")
        strategy = spec.get("strategy", {})
        if strategy.get("type") != "RollingUpdate" or \
                strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            problems.append(f"{name}: a rollout may take a replica away first "
                            "(not RollingUpdate with maxUnavailable 0)")
        spread = [t for t in pod_spec(workload).get("topologySpreadConstraints", [])
                  if t["topologyKey"] == "kubernetes.io/hostname"
                  and selects(t["labelSelector"].get("matchLabels", {}), labels)]
        if not spread:
            problems.append(f"{name}: its pods are not spread across nodes")
        if not any(selects(pdb["spec"]["selector"].get("matchLabels", {}), labels)
                   for pdb in of_kind(objects, "PodDisruptionBudget")):
            problems.append(f"{name}: no PodDisruptionBudget covers its pods")
        scalers = [h for h in of_kind(objects, "HorizontalPodAutoscaler")
                   if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
                   and h["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]]
        if not any(h["spec"].get("minReplicas", 1) >= 2 and any(
                m.get("resource", {}).get("name") == "cpu" for m in h["spec"].get("metrics", []))
                for h in scalers):
            problems.append(f"{name}: no HorizontalPodAutoscaler on CPU keeps 2 or more")
    return problems


def each_upstream_is_one_writer_with_its_volume(objects):
    problems = []
    for workload, container in ours(objects):
        if image_name(container) != UPSTREAM_IMAGE:
            continue
        name = ident(workload)
        if workload["kind"] != "StatefulSet" or workload["spec"].get("replicas", 1) != 1:
            problems.append(f"{name}: SQLite has one writer; it must be a StatefulSet of 1")
            continue
        database = setting(environment(objects, container), "DATABASE_PATH") or ""
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        mounted = [m for m in container.get("volumeMounts", [])
                   if m["name"] in claims and database.startswith(m["mountPath"].rstrip("/") + "/")]
        if not mounted:
            problems.append(f"{name}: DATABASE_PATH {database} is on no claimed volume")
    return problems


def services_select_one_workload_each(objects):
    problems = []
    for service in of_kind(objects, "Service"):
        selector = service["spec"].get("selector", {})
        chosen = [w for w in workloads(objects) if selects(selector, pod_labels(w))]
        if len(chosen) != 1:
            problems.append(f"{ident(service)} selects {len(chosen)} workloads: "
                            f"{[ident(w) for w in chosen]}")
            continue
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if not any(container_port(c, target) in [p["containerPort"] for p in c.get("ports", [])]
                       for c in pod_spec(chosen[0])["containers"]):
                problems.append(f"{ident(service)}: targetPort {target} is no container's port")
    return problems


def cluster_app_secret(objects, container):
    """The CloudNativePG Cluster whose application Secret's `uri` is the container's
    UPSTREAM_URL, if it is: that URL names the cluster's read-write Service, `NAME-rw`."""
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if var["name"] == "UPSTREAM_URL" and ref and ref.get("key") == "uri":
            return next((c for c in of_kind(objects, "Cluster")
                         if ref["name"] == f"{c['metadata']['name']}-app"), None)
    return None


def the_upstream_url_names_a_rendered_service(objects):
    problems = []
    for workload, container in ours(objects):
        if image_name(container) != CONSUMER_IMAGE:
            continue
        if cluster_app_secret(objects, container) is not None:
            continue  # the operator's read-write Service: clusters_are_highly_available
        url = setting(environment(objects, container), "UPSTREAM_URL")
        if url is None:
            problems.append(f"{ident(workload)}: no UPSTREAM_URL")
            continue
        parts = urlsplit(url)
        default = {"http": 80, "https": 443, "redis": 6379, "rediss": 6379,
                   "postgres": 5432, "postgresql": 5432}.get(parts.scheme)
        port = parts.port or default
        service = named(objects, "Service", parts.hostname or "")
        if service is None or port not in [p["port"] for p in service["spec"]["ports"]]:
            problems.append(f"{ident(workload)}: UPSTREAM_URL names {parts.hostname}:{port}, "
                            "which no rendered Service serves")
    return problems


def clusters_are_highly_available(objects):
    """A CloudNativePG Cluster keeps three instances, one synchronous replica that a commit waits
    for, and storage of its own; the consumer attaches to its read-write Service."""
    problems = []
    clusters = of_kind(objects, "Cluster")
    for cluster in clusters:
        name, spec = ident(cluster), cluster["spec"]
        if spec.get("instances", 1) < 3:
            problems.append(f"{name}: fewer than 3 instances")
        synchronous = spec.get("postgresql", {}).get("synchronous", {})
        if synchronous.get("number", 0) < 1 or synchronous.get("method") not in ("any", "first"):
            problems.append(f"{name}: no synchronous replica")
        elif synchronous.get("dataDurability", "required") != "required":
            problems.append(f"{name}: a commit may be acknowledged without its replica")
        if not spec.get("storage", {}).get("size"):
            problems.append(f"{name}: no storage requested")
    if clusters:
        for workload, container in ours(objects):
            if image_name(container) == CONSUMER_IMAGE and \
                    cluster_app_secret(objects, container) is None:
                problems.append(f"{ident(workload)}: UPSTREAM_URL is not a Cluster's read-write "
                                "uri (Secret NAME-app, key uri)")
    return problems


# The settings that name TLS files, and whether a container of that image must have each when
# the render issues certificates.
TLS_FILES = {UPSTREAM_IMAGE: ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"],
             CONSUMER_IMAGE: ["UPSTREAM_CA_FILE", "UPSTREAM_CLIENT_CERT_FILE",
                              "UPSTREAM_CLIENT_KEY_FILE"]}


def certificate_secrets(objects):
    """The Secrets cert-manager's Certificates are kept in."""
    return {c["spec"]["secretName"] for c in of_kind(objects, "Certificate")
            if c["apiVersion"].startswith("cert-manager.io/")}


def mounted_secret(workload, container, path):
    """The Secret mounted where `path` lies, if any."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            return (volumes.get(mount["name"], {}).get("secret") or {}).get("secretName")
    return None


def tls_is_verified_with_mounted_certificates(objects):
    """Where certificates are issued: every URL in a Secret speaks TLS that is verified, each
    TLS file a container names is in a mounted certificate's Secret (the CA included), an
    upstream serving HTTPS is probed over HTTPS; and nowhere is a key in a ConfigMap."""
    problems = []
    for config in of_kind(objects, "ConfigMap"):
        for key, value in config.get("data", {}).items():
            if "PRIVATE KEY-----" in str(value) or key.endswith(".key"):
                problems.append(f"{ident(config)} holds a private key ({key})")
    issued = certificate_secrets(objects)
    if not issued:
        return problems
    for secret in of_kind(objects, "Secret"):
        for key, value in secret.get("data", {}).items():
            url = urlsplit(decode(value)) if "://" in decode(value) else None
            if url is None:
                continue
            verified = url.scheme in ("https", "rediss") or (
                url.scheme in ("postgres", "postgresql") and "sslmode=verify-full" in url.query)
            if not verified:
                problems.append(f"{ident(secret)}: {key} is {url.scheme}://…, not https, rediss "
                                "or postgres with sslmode=verify-full")
    for workload, container in ours(objects):
        where = f"{ident(workload)} container {container['name']}"
        env = environment(objects, container)
        for name in TLS_FILES[image_name(container)]:
            path = setting(env, name)
            if path is None:
                problems.append(f"{where}: no {name}")
            elif mounted_secret(workload, container, path) not in issued:
                problems.append(f"{where}: {name} {path} is in no mounted certificate's Secret")
        if image_name(container) == UPSTREAM_IMAGE:
            for probe in PROBE_PATHS:
                scheme = container.get(probe, {}).get("httpGet", {}).get("scheme", "HTTP")
                if scheme != "HTTPS":
                    problems.append(f"{where}: the {probe} speaks {scheme} to an HTTPS port")
    return problems


INVARIANTS = [
    probes_name_what_the_binaries_serve,
    grace_covers_the_drain,
    pods_are_hardened,
    credentials_come_from_secrets,
    only_the_consumer_reaches_the_backends,
    the_consumer_scales_without_a_gap,
    each_upstream_is_one_writer_with_its_volume,
    services_select_one_workload_each,
    the_upstream_url_names_a_rendered_service,
    clusters_are_highly_available,
    tls_is_verified_with_mounted_certificates,
]


def check_invariants(name, objects):
    return [f"{name}: {problem}" for invariant in INVARIANTS for problem in invariant(objects)]


HASH = re.compile(r"-[a-z0-9]{10}$")


def without_hashes(objects):
    """The render with kustomize's content hashes taken off generated names (and references)."""
    names = {obj["metadata"]["name"]: HASH.sub("", obj["metadata"]["name"])
             for obj in of_kind(objects, "ConfigMap", "Secret")}

    def strip(value):
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items()}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return names.get(value, value) if isinstance(value, str) else value

    return strip(objects)


def a_swap_changes_the_upstream_url_alone(dev, swap):
    """The problems in `swap` as a swap of `dev`: anything that differs but the URL."""
    problems = []
    before, after = without_hashes(dev), without_hashes(swap)
    url = [o for o in after if o["kind"] == "Secret" and "UPSTREAM_URL" in o.get("data", {})]
    old = [o for o in before if o["kind"] == "Secret" and "UPSTREAM_URL" in o.get("data", {})]
    if len(url) != 1 or len(old) != 1 or url[0]["data"] == old[0]["data"]:
        return ["the Secret's UPSTREAM_URL is not what changes"]
    url[0]["data"]["UPSTREAM_URL"] = old[0]["data"]["UPSTREAM_URL"]
    keyed = {ident(o): o for o in before}
    for obj in after:
        if keyed.pop(ident(obj), None) != obj:
            problems.append(f"{ident(obj)} differs from the dev overlay's")
    problems += [f"{name} is missing" for name in keyed]
    return problems


# Breaking each rule on purpose: (what is broken, the rule that must catch it, how).

def consumer(objects):
    return next(w for w in workloads(objects) if w["metadata"]["name"] == "consumer")


def upstream(objects):
    return next(w for w in workloads(objects) if w["metadata"]["name"] == "upstream")


def first_container(workload):
    return pod_spec(workload)["containers"][0]


def config_of(objects, workload):
    name = first_container(workload)["envFrom"][0]["configMapRef"]["name"]
    return named(objects, "ConfigMap", name)["data"]


def policy(objects, name):
    return named(objects, "NetworkPolicy", name)["spec"]


def set_in(mapping, key, value):
    mapping[key] = value


BREAKAGES = [
    ("the readiness probe asks /healthz", probes_name_what_the_binaries_serve,
     lambda o: set_in(first_container(consumer(o))["readinessProbe"]["httpGet"], "path", "/healthz")),
    ("PORT differs from the probed port", probes_name_what_the_binaries_serve,
     lambda o: set_in(config_of(o, upstream(o)), "PORT", "9090")),
    ("no startup probe", probes_name_what_the_binaries_serve,
     lambda o: first_container(upstream(o)).pop("startupProbe")),
    ("a grace period of 12 s for the consumer", grace_covers_the_drain,
     lambda o: set_in(pod_spec(consumer(o)), "terminationGracePeriodSeconds", 12)),
    ("SHUTDOWN_DELAY 0s", grace_covers_the_drain,
     lambda o: set_in(config_of(o, upstream(o)), "SHUTDOWN_DELAY", "0s")),
    ("a writable root filesystem", pods_are_hardened,
     lambda o: first_container(consumer(o))["securityContext"].pop("readOnlyRootFilesystem")),
    ("running as root", pods_are_hardened,
     lambda o: set_in(pod_spec(upstream(o))["securityContext"], "runAsUser", 0)),
    ("the service-account token mounted", pods_are_hardened,
     lambda o: pod_spec(consumer(o)).pop("automountServiceAccountToken")),
    ("privilege escalation allowed", pods_are_hardened,
     lambda o: set_in(first_container(upstream(o))["securityContext"], "allowPrivilegeEscalation", True)),
    ("a capability added", pods_are_hardened,
     lambda o: set_in(first_container(consumer(o))["securityContext"]["capabilities"], "add", ["NET_ADMIN"])),
    ("seccomp unconfined", pods_are_hardened,
     lambda o: set_in(pod_spec(consumer(o))["securityContext"], "seccompProfile", {"type": "Unconfined"})),
    ("no memory limit", pods_are_hardened,
     lambda o: first_container(upstream(o))["resources"]["limits"].pop("memory")),
    ("UPSTREAM_URL from the ConfigMap", credentials_come_from_secrets,
     lambda o: (set_in(config_of(o, consumer(o)), "UPSTREAM_URL", "http://upstream:8081/"),
                first_container(consumer(o)).pop("env"))),
    ("UPSTREAM_URL in the ConfigMap too", credentials_come_from_secrets,
     lambda o: set_in(config_of(o, consumer(o)), "UPSTREAM_URL", "http://upstream:8081/")),
    ("ACCESS_TOKEN as a literal value", credentials_come_from_secrets,
     lambda o: set_in(first_container(upstream(o)), "env", [{"name": "ACCESS_TOKEN", "value": "x"}])),
    ("the policy selects other pods", only_the_consumer_reaches_the_backends,
     lambda o: set_in(policy(o, "upstream")["podSelector"], "matchLabels", {"app": "other"})),
    ("the policy admits every source", only_the_consumer_reaches_the_backends,
     lambda o: policy(o, "redis")["ingress"][0].pop("from")),
    ("the policy admits a namespace", only_the_consumer_reaches_the_backends,
     lambda o: policy(o, "upstream-b")["ingress"][0]["from"].append({"namespaceSelector": {}})),
    ("the policy admits the upstream's own pods", only_the_consumer_reaches_the_backends,
     lambda o: set_in(policy(o, "upstream")["ingress"][0]["from"][0]["podSelector"], "matchLabels",
                      {"app.kubernetes.io/part-of": "portbound"})),
    ("the policy admits any port", only_the_consumer_reaches_the_backends,
     lambda o: policy(o, "upstream")["ingress"][0].pop("ports")),
    ("one consumer replica", the_consumer_scales_without_a_gap,
     lambda o: set_in(consumer(o)["spec"], "replicas", 1)),
    ("a rollout with maxUnavailable 1", the_consumer_scales_without_a_gap,
     lambda o: set_in(consumer(o)["spec"]["strategy"]["rollingUpdate"], "maxUnavailable", 1)),
    ("no spread across nodes", the_consumer_scales_without_a_gap,
     lambda o: pod_spec(consumer(o)).pop("topologySpreadConstraints")),
    ("no PodDisruptionBudget", the_consumer_scales_without_a_gap,
     lambda o: o.remove(named(o, "PodDisruptionBudget", "consumer"))),
    ("no HorizontalPodAutoscaler", the_consumer_scales_without_a_gap,
     lambda o: o.remove(named(o, "HorizontalPodAutoscaler", "consumer"))),
    ("two upstream replicas", each_upstream_is_one_writer_with_its_volume,
     lambda o: set_in(upstream(o)["spec"], "replicas", 2)),
    ("the database off the volume", each_upstream_is_one_writer_with_its_volume,
     lambda o: set_in(config_of(o, upstream(o)), "DATABASE_PATH", "/tmp/upstream.sqlite3")),
    ("a Service selecting both upstreams", services_select_one_workload_each,
     lambda o: named(o, "Service", "upstream-b")["spec"]["selector"].pop("app.kubernetes.io/instance")),
    ("a Service aiming at a port no container has", services_select_one_workload_each,
     lambda o: set_in(named(o, "Service", "consumer")["spec"]["ports"][0], "targetPort", 9999)),
    ("UPSTREAM_URL naming no Service", the_upstream_url_names_a_rendered_service,
     lambda o: o.remove(named(o, "Service", "upstream"))),
]


def cluster(objects):
    return of_kind(objects, "Cluster")[0]


# Broken in a copy of the production-postgres render.
CLUSTER_BREAKAGES = [
    ("one instance", clusters_are_highly_available,
     lambda o: set_in(cluster(o)["spec"], "instances", 1)),
    ("no synchronous replica", clusters_are_highly_available,
     lambda o: cluster(o)["spec"]["postgresql"].pop("synchronous")),
    ("a synchronous replica that may be skipped", clusters_are_highly_available,
     lambda o: set_in(cluster(o)["spec"]["postgresql"]["synchronous"], "dataDurability",
                      "preferred")),
    ("no storage", clusters_are_highly_available,
     lambda o: cluster(o)["spec"].pop("storage")),
    ("UPSTREAM_URL from the read-only Service's Secret", clusters_are_highly_available,
     lambda o: set_in(first_container(consumer(o))["env"][0]["valueFrom"]["secretKeyRef"],
                      "name", "portbound-db-ro")),
]


def consumer_url(objects):
    secret = next(o for o in of_kind(objects, "Secret") if "UPSTREAM_URL" in o.get("data", {}))
    return secret["data"]


def encode(text):
    return base64.b64encode(text.encode()).decode()


# Broken in a copy of the tls render.
TLS_BREAKAGES = [
    ("UPSTREAM_URL over plain HTTP", tls_is_verified_with_mounted_certificates,
     lambda o: set_in(consumer_url(o), "UPSTREAM_URL", encode("http://portbound:x@upstream:8081/"))),
    ("PostgreSQL without verify-full", tls_is_verified_with_mounted_certificates,
     lambda o: set_in(consumer_url(o), "UPSTREAM_URL",
                      encode("postgres://portbound:x@postgres:5432/portbound?sslmode=require"))),
    ("the CA not mounted", tls_is_verified_with_mounted_certificates,
     lambda o: first_container(consumer(o)).pop("volumeMounts")),
    ("a key in a ConfigMap", tls_is_verified_with_mounted_certificates,
     lambda o: set_in(config_of(o, consumer(o)), "tls.key", "-----BEGIN PRIVATE KEY-----")),
    ("an upstream probed over HTTP", tls_is_verified_with_mounted_certificates,
     lambda o: first_container(upstream(o))["readinessProbe"]["httpGet"].pop("scheme")),
]


def breakages_are_caught(dev, production, tls):
    problems = []
    for (what, invariant, breaking), render in \
            [(b, dev) for b in BREAKAGES] + [(b, production) for b in CLUSTER_BREAKAGES] + \
            [(b, tls) for b in TLS_BREAKAGES]:
        broken = copy.deepcopy(render)
        breaking(broken)
        if not invariant(broken):
            problems.append(f"{invariant.__name__} does not notice: {what}")
    changed = copy.deepcopy(dev)
    config_of(changed, consumer(changed))["RUST_LOG"] = "debug"
    if not a_swap_changes_the_upstream_url_alone(dev, changed):
        problems.append("a_swap_changes_the_upstream_url_alone does not notice a ConfigMap change")
    return problems


def local_certificate(workload, container, path, binaries, work):
    """`path` in a mounted certificate's Secret (tls.crt, tls.key or ca.crt), as a file here:
    the Secret's certificate made by the upstream's `certs` subcommand, for the host names the
    binaries are probed at."""
    secret = mounted_secret(workload, container, path)
    made = work / "certs"
    if not (made / "ca.pem").exists():
        subprocess.run([str(binaries / "upstream"), "certs", str(made), "localhost"],
                       check=True, capture_output=True)
    here = work / f"secret-{secret}"
    if here.exists():
        return str(here / Path(path).name)
    here.mkdir()
    for key, source in {"tls.crt": "localhost.pem", "tls.key": "localhost-key.pem",
                        "ca.crt": "ca.pem"}.items():
        shutil.copy(made / source, here / key)
    return str(here / Path(path).name)


def probes_answer(name, objects, binaries, work):
    """Starts each portbound container's binary with its rendered settings; every probe path
    must answer 200."""
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from services import Service

    problems = []
    for index, (workload, container) in enumerate(ours(objects)):
        env = {key: value for key, (_, value) in environment(objects, container).items()
               if value is not None}
        if "DATABASE_PATH" in env:
            env["DATABASE_PATH"] = str(work / f"{index}.sqlite3")
        cafile = None
        for name in TLS_FILES[image_name(container)]:
            if name in env:
                env[name] = local_certificate(workload, container, env[name], binaries, work)
                cafile = cafile or str(Path(env[name]).parent / "ca.crt")
        log = open(work / f"{index}.log", "w")
        try:
            service = Service(binaries / image_name(container).removeprefix("portbound-"),
                              env, log, cafile=cafile if "TLS_CERT_FILE" in env else None)
        except SystemExit as error:
            problems.append(f"{name}: {ident(workload)} does not start with its settings: {error}")
            continue
        try:
            for probe in PROBE_PATHS:
                path = container.get(probe, {}).get("httpGet", {}).get("path")
                try:
                    with service.open(f"{service.url}{path}") as answer:
                        status = answer.status
                except OSError as error:
                    status = getattr(error, "code", error)
                if status != 200:
                    problems.append(f"{name}: {ident(workload)}'s {probe} {path} answers {status}")
        finally:
            service.stop(graceful=False)
    return problems


def main():
    into_venv()
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from services import build

    problems = []
    renders = {}
    for name in RENDERS:
        renders[name] = render(name)
        counts = Counter(obj["kind"] for obj in renders[name])
        say(f"{name}: {len(renders[name])} objects: "
            + ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items())))
        problems += validate(name, renders[name])
    say(f"validated strictly against Kubernetes {' and '.join(SCHEMA_VERSIONS)}")
    for name in RENDERS[1:]:
        problems += check_invariants(name, renders[name])
    for name in SWAPS:
        problems += [f"{name}: {p}" for p in
                     a_swap_changes_the_upstream_url_alone(renders["overlays/dev"], renders[name])]
    say(f"{len(INVARIANTS) + 1} invariants checked on {len(RENDERS) - 1} overlays")
    problems += breakages_are_caught(renders["overlays/dev"],
                                     renders["overlays/production-postgres"],
                                     renders["overlays/tls"])
    say(f"{len(BREAKAGES) + len(CLUSTER_BREAKAGES) + len(TLS_BREAKAGES) + 1} "
        "deliberate breakages tried")
    binaries = build(say)
    with tempfile.TemporaryDirectory(prefix="portbound-kubernetes-") as work:
        for name in RENDERS[1:]:
            problems += probes_answer(name, renders[name], binaries, Path(work))
    say("probed the binaries started with each overlay's settings")
    for problem in problems:
        print(f"FAILED: {problem}", flush=True)
    say("all checks passed" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
