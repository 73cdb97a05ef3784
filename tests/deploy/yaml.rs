//! Loading the YAML under `deploy/` (strictly, with PyYAML) and checking that every YAML and
//! JSON file there parses, and that Grafana provisioning matches the compose mounts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::{INSTALL_HINT, arr, deploy, files_under, read, root, s};

/// A python3 that can `import yaml` (PyYAML); panics with the install hint otherwise.
fn yaml_python() -> &'static str {
    static PY: OnceLock<&'static str> = OnceLock::new();
    PY.get_or_init(|| {
        for py in ["python3", "/usr/bin/python3"] {
            let ok = Command::new(py)
                .args(["-c", "import yaml"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return py;
            }
        }
        panic!("no python3 with PyYAML found: {INSTALL_HINT}");
    })
}

/// Loads YAML strictly (duplicate keys are errors) and prints {path: [documents]} as JSON.
const YAML_TO_JSON: &str = r#"
import json, sys, yaml

class StrictLoader(yaml.SafeLoader):
    pass

def mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)

StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
out = {}
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            out[path] = list(yaml.load_all(f, Loader=StrictLoader))
    except Exception as e:
        sys.stderr.write("%s: %s\n" % (path, e))
        sys.exit(1)
json.dump(out, sys.stdout, default=str)
"#;

/// Every YAML file under deploy/, parsed once: path -> documents.
fn yaml_files() -> &'static BTreeMap<PathBuf, Vec<Value>> {
    static FILES: OnceLock<BTreeMap<PathBuf, Vec<Value>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let paths = files_under(&root().join("deploy"), &["yaml", "yml"]);
        assert!(!paths.is_empty(), "no YAML files under deploy/");
        let out = Command::new(yaml_python())
            .arg("-c")
            .arg(YAML_TO_JSON)
            .args(&paths)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "YAML does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: BTreeMap<String, Vec<Value>> = serde_json::from_slice(&out.stdout).unwrap();
        parsed
            .into_iter()
            .map(|(k, v)| (PathBuf::from(k), v))
            .collect()
    })
}

pub(crate) fn yaml(rel: &str) -> &'static Vec<Value> {
    let p = deploy(rel);
    yaml_files()
        .get(&p)
        .unwrap_or_else(|| panic!("{} was not parsed", p.display()))
}

pub(crate) fn yaml1(rel: &str) -> &'static Value {
    let docs = yaml(rel);
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    &docs[0]
}

#[test]
fn every_yaml_and_json_file_under_deploy_parses() {
    let yamls = yaml_files();
    for (path, docs) in yamls {
        assert!(
            docs.iter().any(|d| !d.is_null()),
            "{}: empty",
            path.display()
        );
    }
    let jsons = files_under(&root().join("deploy"), &["json"]);
    assert!(!jsons.is_empty());
    for p in jsons {
        let _: Value =
            serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    // Grafana provisioning points where compose mounts the dashboards.
    let prov = yaml1("grafana/provisioning/dashboards/callhook.yaml");
    assert_eq!(prov["apiVersion"], 1);
    let path = s(&prov["providers"][0]["options"]["path"], "provider path");
    let ds = yaml1("grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    let compose = yaml1("docker/compose.yaml");
    let grafana_mounts = arr(
        &compose["services"]["grafana"]["volumes"],
        "grafana volumes",
    );
    assert!(
        grafana_mounts
            .iter()
            .any(|m| s(m, "mount").starts_with(&format!("../grafana/dashboards:{path}"))),
        "compose mounts the dashboards at the provisioned path {path}"
    );
}
