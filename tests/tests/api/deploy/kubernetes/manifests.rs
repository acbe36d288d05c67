//! Reading rendered manifests: objects by kind and name, a container's environment as the
//! kubelet assembles it, and what selectors, mounts and NetworkPolicies let a pod do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// A pod address standing in for the downward API's `status.podIP`.
pub const POD_IP: &str = "127.0.0.7";
/// Variables of the pods that are not settings of the service, and why they are there.
const OTHER_VARIABLES: [&str; 2] = [
    "POD_IP",        // the downward API, for remote.advertise_url
    "SSL_CERT_FILE", // the broker's CA, read by rustls-native-certs instead of the platform's store
];
const SECRET_EXAMPLE: &str = include_str!("../../../../../deploy/kubernetes/base/secret.example.yaml");

/// Runs deploy/scripts/kubernetes.sh (which installs its tools into .local/ on first use).
pub fn kubernetes_sh(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = Command::new(root.join("deploy/scripts/kubernetes.sh")).args(args).current_dir(root).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "deploy/scripts/kubernetes.sh {args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

fn yaml_documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|document| !document.is_null())
        .collect()
}

/// A kustomization, rendered.
pub struct Manifests(pub Vec<Value>);

impl Manifests {
    pub fn render(kustomization: &str) -> Self {
        Manifests(yaml_documents(&kubernetes_sh(&["render", kustomization])))
    }

    pub fn all<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0.iter().filter(move |o| o["kind"] == kind)
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        let found = self.0.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name);
        found.unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    /// The egress rules of every NetworkPolicy that applies to pods with `labels`.
    pub fn egress_rules<'a>(&'a self, labels: &'a Value) -> Vec<&'a Value> {
        self.policies(labels).flat_map(|p| p["spec"]["egress"].as_array().into_iter().flatten()).collect()
    }

    /// The ingress rules of every NetworkPolicy that applies to pods with `labels`.
    pub fn ingress_rules<'a>(&'a self, labels: &'a Value) -> Vec<&'a Value> {
        self.policies(labels).flat_map(|p| p["spec"]["ingress"].as_array().into_iter().flatten()).collect()
    }

    fn policies<'a>(&'a self, labels: &'a Value) -> impl Iterator<Item = &'a Value> + 'a {
        self.all("NetworkPolicy").filter(move |p| {
            let selector = &p["spec"]["podSelector"];
            // An empty podSelector applies to every pod of the namespace.
            selector["matchLabels"].as_object().is_none_or(|m| m.is_empty()) || selects(selector, labels)
        })
    }

    /// Whether pods with `labels` may open connections to pods labelled `to` on `port`.
    pub fn may_reach(&self, labels: &Value, to: (&str, &str), port: i64) -> bool {
        self.egress_rules(labels).iter().any(|rule| {
            let peers = rule["to"].as_array().into_iter().flatten();
            let peer = peers.into_iter().any(|peer| peer["podSelector"]["matchLabels"][to.0] == to.1);
            peer && ports(rule).contains(&port)
        })
    }
}

pub fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("{value} is not a string"))
}

pub fn int_of(value: &Value) -> i64 {
    value.as_i64().unwrap_or_else(|| panic!("{value} is not an integer"))
}

/// Whether a selector names labels, and they all hold in `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let wanted = selector["matchLabels"].as_object();
    wanted.is_some_and(|wanted| !wanted.is_empty() && wanted.iter().all(|(k, v)| labels[k] == *v))
}

/// The ports a NetworkPolicy rule lists, as numbers.
pub fn ports(rule: &Value) -> BTreeSet<i64> {
    rule["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_i64()).collect()
}

/// The file a path inside the container comes from: (Secret, key).
pub fn mounted_file(pod: &Value, container: &Value, path: &str) -> (String, String) {
    let (directory, file) = path.rsplit_once('/').unwrap();
    let mount = container["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == directory);
    let mount = mount.unwrap_or_else(|| panic!("nothing is mounted at {directory}"));
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    let item = volume["secret"]["items"].as_array().unwrap().iter().find(|i| i["path"] == file).unwrap();
    (str_of(&volume["secret"]["secretName"]).to_owned(), str_of(&item["key"]).to_owned())
}

/// An nginx size (`2m`, `512k`, bytes) in bytes.
pub fn nginx_size(size: &str) -> u64 {
    let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
    digits.parse::<u64>().unwrap()
        * match unit.to_ascii_lowercase().as_str() {
            "" => 1,
            "k" => 1024,
            "m" => 1024 * 1024,
            "g" => 1024 * 1024 * 1024,
            other => panic!("unknown nginx size unit {other}"),
        }
}

/// The example Secret's values (base/secret.example.yaml), each REPLACE filled in as an
/// operator would when `filled`.
pub fn secret_values(filled: bool) -> BTreeMap<String, String> {
    let secret = &yaml_documents(SECRET_EXAMPLE)[0];
    assert_eq!((secret["kind"].as_str(), secret["metadata"]["name"].as_str()), (Some("Secret"), Some("myscanner")));
    let fill = |value: &str| match filled {
        true => value.replace("REPLACE_USER", "default_user_k8s").replace("REPLACE", &"s3cret".repeat(8)),
        false => value.to_owned(),
    };
    secret["stringData"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), fill(str_of(v)))).collect()
}

/// One container's environment as the kubelet assembles it: envFrom in order, then `env`,
/// which wins; `$(VAR)` expanded from variables defined before it. Every name is a setting
/// (MYSCANNER_*) or one of the few others the pods need.
pub fn environment(
    manifests: &Manifests,
    container: &Value,
    secret: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_array().unwrap() {
        if let Some(name) = source["configMapRef"]["name"].as_str() {
            for (k, v) in manifests.get("ConfigMap", name)["data"].as_object().unwrap() {
                env.insert(k.clone(), str_of(v).to_owned());
            }
        } else {
            assert_eq!(source["secretRef"]["name"], "myscanner", "the Secret secret.example.yaml shows");
            env.extend(secret.clone());
        }
    }
    for var in container["env"].as_array().unwrap() {
        let name = str_of(&var["name"]).to_owned();
        let value = match var["value"].as_str() {
            Some(value) => {
                let mut value = value.to_owned();
                while let Some(start) = value.find("$(") {
                    let end = start + value[start..].find(')').unwrap();
                    let reference = &value[start + 2..end];
                    let expanded =
                        env.get(reference).unwrap_or_else(|| panic!("{name} uses $({reference}) before it is set"));
                    value = format!("{}{expanded}{}", &value[..start], &value[end + 1..]);
                }
                value
            }
            None => {
                assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP", "{var}");
                POD_IP.to_owned()
            }
        };
        env.insert(name, value);
    }
    for name in env.keys() {
        assert!(name.starts_with("MYSCANNER_") || OTHER_VARIABLES.contains(&name.as_str()), "{name} is unknown");
    }
    env
}
