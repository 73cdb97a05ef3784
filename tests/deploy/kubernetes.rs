//! The Kubernetes manifests: consistent selectors, probes, volumes, security context and a
//! grace period that fits the drain; the shipped config passes `callhook check-config`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common;
use crate::yaml::{yaml, yaml1};
use crate::{arr, deploy, files_under, on_path, read, s};

fn k8s_objects() -> Vec<&'static Value> {
    let kust = yaml1("kubernetes/kustomization.yaml");
    arr(&kust["resources"], "resources")
        .iter()
        .flat_map(|r| yaml(&format!("kubernetes/{}", s(r, "resource"))))
        .collect()
}

fn k8s(kind: &str, name: &str) -> &'static Value {
    k8s_objects()
        .into_iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("matchLabels");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_are_consistent() {
    let dir = deploy("kubernetes");
    let kust = yaml1("kubernetes/kustomization.yaml");
    let listed: BTreeSet<&str> = arr(&kust["resources"], "resources")
        .iter()
        .map(|r| s(r, "resource"))
        .collect();
    for f in files_under(&dir, &["yaml", "yml"]) {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name == "kustomization.yaml" || listed.contains(name),
            "{name} is not in kustomization.yaml resources"
        );
    }
    let generator = &kust["configMapGenerator"][0];
    let cfg_file = s(&generator["files"][0], "configMapGenerator file");
    assert!(dir.join(cfg_file).is_file());

    let sts = k8s("StatefulSet", "callhook");
    let spec = &sts["spec"];
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels));
    assert_eq!(
        pod["enableServiceLinks"], false,
        "service links inject CALLHOOK_* variables that callhook rejects as unknown config keys"
    );

    // Services: the ClusterIP one is scraped, the headless one governs the StatefulSet.
    let svc = k8s("Service", "callhook");
    let headless = k8s("Service", s(&spec["serviceName"], "serviceName"));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert!(selects(&svc["spec"]["selector"], pod_labels));
    assert!(selects(&headless["spec"]["selector"], pod_labels));
    let sm = k8s("ServiceMonitor", "callhook");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let sm_sel = &sm["spec"]["selector"]["matchLabels"];
    assert!(selects(sm_sel, &svc["metadata"]["labels"]));
    assert!(
        !selects(sm_sel, &headless["metadata"]["labels"]),
        "the headless Service would be scraped twice"
    );
    let sm_port = &sm["spec"]["endpoints"][0]["port"];
    assert!(
        arr(&svc["spec"]["ports"], "ports")
            .iter()
            .any(|p| p["name"] == *sm_port)
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let pdb = k8s("PodDisruptionBudget", "callhook");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));

    let c = &pod["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Probes and scrapes on the ops listener, whose port the config sets: outside the
    // webhook listener's connection cap.
    let ops_port = arr(&c["ports"], "ports")
        .iter()
        .find(|p| p["name"] == "ops")
        .expect("an ops container port")["containerPort"]
        .as_u64()
        .unwrap();
    let toml: toml::Value = read(&deploy("kubernetes/callhook.toml")).parse().unwrap();
    assert_eq!(
        toml["server"]["ops_listen"].as_str(),
        Some(format!("0.0.0.0:{ops_port}").as_str())
    );
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "ops", "{probe}");
    }
    assert_eq!(*sm_port, "ops");
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].is_string(), "resources.{k}.{r}");
        }
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["runAsUser"], 10001,
        "the image's uid"
    );

    // Volumes: the spool on the claim template, the config from the generated ConfigMap.
    let mounts = arr(&c["volumeMounts"], "volumeMounts");
    let mount = |path: &str| {
        s(
            &mounts
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("nothing mounted at {path}"))["name"],
            "mount name",
        )
    };
    assert_eq!(
        spec["volumeClaimTemplates"][0]["metadata"]["name"],
        mount("/var/lib/callhook")
    );
    let cfg_vol = arr(&pod["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == mount("/etc/callhook"))
        .expect("config volume");
    assert_eq!(cfg_vol["configMap"]["name"], generator["name"]);
    let args: Vec<&str> = arr(&c["args"], "args")
        .iter()
        .map(|a| s(a, "arg"))
        .collect();
    assert_eq!(args, ["--config", &format!("/etc/callhook/{cfg_file}")]);

    // SIGTERM drain fits in the grace period: preStop sleep + shutdown_grace + Kafka flush.
    let cfg: toml::Value = toml::from_str(&read(&dir.join(cfg_file))).unwrap();
    let ms = |table: &str, key: &str, default: i64| {
        cfg.get(table)
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_integer)
            .unwrap_or(default)
    };
    let pre_stop: Vec<&str> = arr(&c["lifecycle"]["preStop"]["exec"]["command"], "preStop")
        .iter()
        .map(|a| s(a, "preStop"))
        .collect();
    assert_eq!(pre_stop[0], "sleep");
    let sleep: i64 = pre_stop[1].parse().unwrap();
    let need = sleep * 1000
        + ms("server", "shutdown_grace_ms", 10_000)
        + ms("kafka", "flush_timeout_ms", 5_000);
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(
        grace * 1000 >= need + 5_000,
        "terminationGracePeriodSeconds {grace} s leaves no margin over {need} ms of drain"
    );

    // kustomize renders it, where kubectl is installed (it is optional for this suite).
    if on_path("kubectl") {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for kind in [
            "StatefulSet",
            "ServiceMonitor",
            "ConfigMap",
            "PodDisruptionBudget",
        ] {
            assert!(text.contains(&format!("kind: {kind}")), "rendered {kind}");
        }
    } else {
        eprintln!("note: kubectl not installed; kustomize rendering not checked");
    }
}

fn check_config(path: &Path) -> Output {
    let mut cmd = Command::new(common::BIN);
    cmd.arg("check-config").arg("--config").arg(path);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CALLHOOK_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

#[test]
fn kubernetes_config_passes_callhook_check_config() {
    let out = check_config(&deploy("kubernetes/callhook.toml"));
    assert!(
        out.status.success(),
        "check-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("/var/lib/callhook"), "{effective}");
}
