#!/usr/bin/env python3
"""Writes rkube-api's protobuf schema table (src/protobuf/schema.txt).

Kubernetes' protobuf messages are the Go API types; their JSON form is what rkube's
API server stores. This joins two descriptions of the same types:

* k8s-pb (prost code generated from upstream's generated.proto): field numbers and
  wire types;
* k8s-openapi (generated from upstream's OpenAPI): the JSON field names and which
  fields are required;

plus src/protobuf/pointers.txt: the scalar fields that are pointers in Go, whose zero
value is meaningful (`replicas: 0`) and so kept when decoding.

Usage: tools/protobuf_schema.py [CARGO_REGISTRY_CACHE_DIR] > src/protobuf/schema.txt
The crates are read from the cargo registry cache (`cargo fetch` brings them).
"""

import glob
import io
import os
import re
import sys
import tarfile

PB_VERSION = "0.9.0"
OPENAPI_VERSION = "0.29.0"
OPENAPI_FEATURES = ["v1_37", "v1_36", "v1_35", "v1_34", "v1_33"]

# Group versions whose kinds rkube serves (and meta.k8s.io).
SERVED = [
    "v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2",
    "networking.k8s.io/v1", "policy/v1", "rbac.authorization.k8s.io/v1",
    "scheduling.k8s.io/v1", "storage.k8s.io/v1", "coordination.k8s.io/v1",
    "discovery.k8s.io/v1", "events.k8s.io/v1", "node.k8s.io/v1",
    "certificates.k8s.io/v1", "admissionregistration.k8s.io/v1",
    "apiextensions.k8s.io/v1", "authentication.k8s.io/v1",
    "authorization.k8s.io/v1", "apiregistration.k8s.io/v1",
]

# meta.k8s.io kinds clients send or accept, with the apiVersions they carry.
META_KINDS = [
    ("v1", "Status"), ("meta.k8s.io/v1", "Status"),
    ("v1", "DeleteOptions"), ("meta.k8s.io/v1", "DeleteOptions"),
    ("meta.k8s.io/v1", "PartialObjectMetadata"),
    ("meta.k8s.io/v1", "PartialObjectMetadataList"),
    ("meta.k8s.io/v1", "WatchEvent"),
]

PREFIXES = [
    ("apimachinery.pkg.apis.", ""),
    ("apimachinery.pkg.api.resource.", "resource."),
    ("apimachinery.pkg.util.intstr.", "intstr."),
    ("apimachinery.pkg.runtime.", "runtime."),
    ("apiextensions_apiserver.pkg.apis.", ""),
    ("kube_aggregator.pkg.apis.", ""),
    ("api.", ""),
]

OPENAPI_PREFIXES = [
    ("io.k8s.apiextensions-apiserver.pkg.apis.", "apiextensions_apiserver.pkg.apis."),
    ("io.k8s.kube-aggregator.pkg.apis.", "kube_aggregator.pkg.apis."),
    ("io.k8s.", ""),
]


def short(full):
    for p, r in PREFIXES:
        if full.startswith(p):
            return r + full[len(p):]
    return full


def norm(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def read_crate(cache, name, version):
    paths = glob.glob(os.path.join(cache, "*", f"{name}-{version}.crate"))
    if not paths:
        sys.exit(f"{name}-{version}.crate not in {cache}: run `cargo fetch`")
    files = {}
    with tarfile.open(paths[0]) as t:
        for m in t.getmembers():
            if m.isfile() and m.name.endswith(".rs"):
                rel = m.name.split("/", 1)[1]
                files[rel] = t.extractfile(m).read().decode()
    return files


PROST_ATTR = re.compile(r'#\[prost\(([^)]*)\)\]')


def resolve(module, rust_type):
    """The full dotted name of a Rust type path used in `module`."""
    rust_type = rust_type.strip()
    if rust_type.startswith("crate::"):
        return rust_type[len("crate::"):].replace("::", ".")
    parts = module.split(".")
    segs = rust_type.split("::")
    while segs and segs[0] == "super":
        parts = parts[:-1]
        segs = segs[1:]
    return ".".join(parts + segs)


def parse_pb(files):
    """Messages: name -> list of (tag, rust_field, kind, repeated, map_value)."""
    messages = {}
    kinds = []  # (apiVersion, kind, message)
    for path, src in files.items():
        if not path.startswith("src/") or not path.endswith("mod.rs"):
            continue
        module = path[len("src/"):-len("/mod.rs")].replace("/", ".")
        if module == "src":
            continue
        for m in re.finditer(r"pub struct (\w+) \{(\}|.*?\n\})", src, re.S):
            name, body = m.group(1), m.group(2)
            fields = []
            lines = body.split("\n")
            i = 0
            while i < len(lines):
                a = PROST_ATTR.search(lines[i])
                if not a:
                    i += 1
                    continue
                attr = a.group(1)
                decl = ""
                j = i + 1
                # A declaration may span lines; it ends with `,` once `<` and `>` balance.
                while not (decl.startswith("pub ") and decl.endswith(",")
                           and decl.count("<") == decl.count(">")):
                    decl += lines[j].strip()
                    j += 1
                fm = re.match(r"pub (?:r#)?(\w+):\s*(.*?),?$", decl.replace(",>", ">"))
                rust_field, rust_type = fm.group(1), fm.group(2)
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                repeated = "repeated" in attr
                map_value = None
                if "map =" in attr:
                    vt = re.search(r'map = "string, (\w+)"', attr).group(1)
                    kind = "map"
                    if vt == "message":
                        inner = re.search(r"BTreeMap<\s*::prost::alloc::string::String,\s*(.*)>$", rust_type).group(1)
                        map_value = "." + resolve(module, inner)
                    else:
                        map_value = vt
                else:
                    kind = attr.split(",")[0].strip()
                    if kind.startswith("bytes"):
                        kind = "bytes"
                    if kind == "message":
                        mm = re.search(r"(?:Option|Vec)<(.*)>$", rust_type)
                        if not mm:
                            sys.exit(f"cannot parse {module}.{name}: {decl!r}")
                        inner = mm.group(1)
                        inner = re.sub(r"^::prost::alloc::boxed::Box<(.*)>$", r"\1", inner)
                        kind = "." + resolve(module, inner)
                fields.append((tag, rust_field, kind, repeated, map_value))
                i = j
            messages[f"{module}.{name}"] = fields
        for r in re.finditer(
            r'impl crate::Resource for (\w+) \{\s*const API_VERSION: &\'static str = "([^"]+)";.*?const KIND: &\'static str = "([^"]+)";',
            src, re.S):
            kinds.append((r.group(2), r.group(3), f"{module}.{r.group(1)}"))
    return messages, kinds


def parse_openapi(files):
    """Definitions by lower-cased k8s-pb-style name -> {norm(json): (json, required)}."""
    defs = {}
    # v1_33 (the version rkube serves) last, so it wins; newer ones add later fields.
    for feature in OPENAPI_FEATURES:
        for path, src in files.items():
            if not path.startswith(f"src/{feature}/"):
                continue
            g = re.search(r"// Generated from definition (\S+)", src)
            if not g:
                continue
            d = g.group(1)
            for p, r in OPENAPI_PREFIXES:
                if d.startswith(p):
                    d = r + d[len(p):]
                    break
            sm = re.search(r"pub struct \w+ \{(.*?)\n\}", src, re.S)
            if not sm:
                continue
            required = {}
            for f in re.finditer(r"^    pub (?:r#)?(\w+): (.*),$", sm.group(1), re.M):
                required[f.group(1)] = not f.group(2).startswith("Option<")
            names = {}
            for j in re.finditer(r'"([^"]+)" => Field::Key_(\w+),', src):
                names[norm(j.group(1))] = (j.group(1), required.get(j.group(2), False))
            key = d.lower()
            merged = defs.get(key, {})
            merged.update(names)
            defs[key] = merged
    return defs


def inlines(messages, child, names):
    """Whether all of a message's fields (through nested inlined ones) are JSON names
    of the parent."""
    for _, rust_field, kind, _, _ in child:
        if norm(rust_field) in names:
            continue
        grandchild = messages.get(kind[1:]) if kind.startswith(".") else None
        if not (grandchild and inlines(messages, grandchild, names)):
            return False
    return True


def main():
    cache = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cargo/registry/cache")
    here = os.path.dirname(os.path.abspath(__file__))
    pointers = set()
    with open(os.path.join(here, "..", "src", "protobuf", "pointers.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                pointers.add(line.lower())

    messages, kinds = parse_pb(read_crate(cache, "k8s-pb", PB_VERSION))
    defs = parse_openapi(read_crate(cache, "k8s-openapi", OPENAPI_VERSION))

    roots = []
    for api_version, kind, msg in kinds:
        if api_version in SERVED:
            roots.append((api_version, kind, msg))
            if msg + "List" in messages:
                roots.append((api_version, kind + "List", msg + "List"))
    for api_version, kind in META_KINDS:
        roots.append((api_version, kind, f"apimachinery.pkg.apis.meta.v1.{kind}"))
    roots.append(("", "", "apimachinery.pkg.runtime.Unknown"))

    # Messages reachable from the roots.
    wanted, todo = set(), [m for _, _, m in roots]
    while todo:
        m = todo.pop()
        if m in wanted:
            continue
        if m not in messages:
            sys.exit(f"unknown message {m}")
        wanted.add(m)
        for _, _, kind, _, map_value in messages[m]:
            for t in (kind, map_value):
                if t and t.startswith("."):
                    todo.append(t[1:])

    out = io.StringIO()
    out.write(f"# Generated by tools/protobuf_schema.py from k8s-pb {PB_VERSION} and "
              f"k8s-openapi {OPENAPI_VERSION}; do not edit.\n")
    out.write("# K apiVersion kind message | M message | tag json type[*] flags\n")
    for api_version, kind, msg in sorted(roots):
        if kind:
            out.write(f"K {api_version} {kind} {short(msg)}\n")
    used_pointers = set()
    warnings = []
    for m in sorted(wanted):
        names = defs.get(m.lower(), {})
        out.write(f"M {short(m)}\n")
        for tag, rust_field, kind, repeated, map_value in sorted(messages[m]):
            flags = ""
            entry = names.get(norm(rust_field))
            if entry:
                json_name, required = entry
                flags += "r" if required else ""
            else:
                # An embedded struct whose fields JSON inlines (`json:",inline"`).
                child = messages.get(kind[1:]) if kind.startswith(".") else None
                if child and names and inlines(messages, child, names):
                    json_name, flags = "-", "i"
                else:
                    parts = rust_field.split("_")
                    json_name = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
                    if names:
                        warnings.append(f"{m}.{rust_field}: no JSON name, using {json_name}")
            # k8s-pb spells acronyms in type names its own way (`HpaScalingRules`).
            key = f"{short(m)}.{json_name}".lower()
            if key in pointers:
                flags += "p"
                used_pointers.add(key)
            t = kind if kind != "map" else "{" + (map_value if not map_value.startswith(".") else "." + short(map_value[1:])) + "}"
            if t.startswith("."):
                t = "." + short(t[1:])
            out.write(f"{tag} {json_name} {t}{'*' if repeated else ''} {flags or '-'}\n")
    for p in sorted(pointers - used_pointers):
        warnings.append(f"pointers.txt: {p} matches no field")
    for w in warnings:
        print(w, file=sys.stderr)
    sys.stdout.write(out.getvalue())


main()
