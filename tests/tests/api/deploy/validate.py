"""Validates Kubernetes manifests offline, for deploy/scripts/kubernetes.sh.

Every object of the given multi-document YAML files is checked:
  - Kubernetes' own kinds against the API schemas that kubernetes-validate bundles, in
    strict mode (unknown fields are errors), for each --kubernetes version given;
  - RabbitmqCluster (rabbitmq.com/v1beta1) against rabbitmqcluster.schema.json beside this
    file, a minimal schema written from the operator's documented fields (no installable
    package ships that CRD's schema), its embedded Kubernetes types resolved against the
    same bundled definitions;
  - CloudNativePG objects (postgresql.cnpg.io) are written to --cnpg-out for
    validate-cnpg.mjs, which checks them with the operator's published CRD schema (npm:
    @kubernetes-models/cloudnative-pg).
An object of any other kind fails: nothing passes unchecked.
"""

import argparse
import json
import pathlib
import sys

import importlib_resources
import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

HERE = pathlib.Path(__file__).resolve().parent
RABBITMQ_SCHEMA = json.loads((HERE / "rabbitmqcluster.schema.json").read_text())


def bundled_definitions(version):
    """Kubernetes' shared definitions (strict) as kubernetes-validate bundles them."""
    major_minor = ".".join(version.split(".")[:2])
    root = importlib_resources.files("kubernetes_validate") / "kubernetes-json-schema"
    directory = root / f"v{major_minor}.0-local-strict"
    return json.loads((directory / "_definitions.json").read_text())


def validate_rabbitmq(doc, version):
    registry = Resource.from_contents(bundled_definitions(version)) @ Registry()
    validator = jsonschema.Draft202012Validator(RABBITMQ_SCHEMA, registry=registry)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    return [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors]


def validate_kubernetes(doc, version):
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return []
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"no schema: {e.message}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubernetes", action="append", required=True, help="a Kubernetes version, e.g. 1.30.0")
    parser.add_argument("--cnpg-out", required=True, help="where to write the CloudNativePG objects (JSON)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    failures, checked, cnpg = [], 0, []
    for name in args.files:
        with open(name) as f:
            docs = [doc for doc in yaml.safe_load_all(f) if doc]
        for doc in docs:
            what = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            api_version = doc.get("apiVersion", "")
            checked += 1
            if api_version.startswith("postgresql.cnpg.io/"):
                cnpg.append({"source": what, "object": doc})
                continue
            for version in args.kubernetes:
                if api_version == "rabbitmq.com/v1beta1" and doc.get("kind") == "RabbitmqCluster":
                    errors = validate_rabbitmq(doc, version)
                else:
                    errors = validate_kubernetes(doc, version)
                failures += [f"{what} (Kubernetes {version}): {error}" for error in errors]
    pathlib.Path(args.cnpg_out).write_text(json.dumps(cnpg))

    for failure in failures:
        print(f"INVALID {failure}", file=sys.stderr)
    versions = ", ".join(args.kubernetes)
    print(f"{checked - len(cnpg)} objects checked against Kubernetes {versions} "
          f"(RabbitmqCluster against its minimal schema); {len(cnpg)} CloudNativePG objects left to validate-cnpg.mjs")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
