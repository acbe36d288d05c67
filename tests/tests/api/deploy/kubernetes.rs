//! deploy/kubernetes/ cannot be applied here (no cluster), so it is checked offline.
//! `deploy/scripts/kubernetes.sh validate` renders the base and every overlay with kustomize
//! and checks each object against its API schema (deploy/kubernetes/README.md says how).
//! Then the production overlay, rendered, is read against the service itself: every
//! MYSCANNER_* variable is a real setting of the right type and each pod's whole
//! environment passes the production checks; each role's switches are the real keys; ports,
//! probe paths, the names of Secrets, Services and clusters, the ingress controller's limits,
//! the NetworkPolicies and the database's connection budget agree with the configuration;
//! and no pod holds a privilege.

mod manifests;

use std::collections::{BTreeMap, BTreeSet};

use myscanner::config::Config;
use reqwest::Url;
use serde_json::{Value, json};

use self::manifests::{
    Manifests, POD_IP, environment, int_of, kubernetes_sh, mounted_file, nginx_size, ports, secret_values, selects,
    str_of,
};

/// What the overlay names the image (overlays/production/kustomization.yaml, `images`).
const IMAGE: &str = "registry.example.com/myscanner:0.1.0";
/// PostgreSQL's `superuser_reserved_connections` (its default; postgres.yaml leaves it).
const RESERVED_CONNECTIONS: i64 = 3;
/// How long a replica's remote registry waits at shutdown for sessions to record their end
/// (backend/src/remote/registry/mod.rs, `shutdown`).
const REMOTE_SHUTDOWN_SECS: i64 = 10;

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let report = kubernetes_sh(&["validate"]);
    assert!(report.contains("CloudNativePG objects checked"), "{report}");
}

/// One pod template of the overlay, with the configuration its environment gives the service.
struct Workload<'a> {
    object: &'a Value,
    name: &'a str,
    role: &'a str,
    pod: &'a Value,
    container: &'a Value,
    labels: &'a Value,
    env: BTreeMap<String, String>,
    config: Config,
}

impl Workload<'_> {
    fn is_job(&self) -> bool {
        self.object["kind"] == "Job"
    }
}

#[test]
fn kubernetes_manifests_agree_with_the_service() {
    let manifests = Manifests::render("deploy/kubernetes/overlays/production");
    for object in manifests.0.iter().filter(|o| o["kind"] != "Namespace") {
        assert_eq!(object["metadata"]["namespace"], "myscanner", "{} {}", object["kind"], object["metadata"]["name"]);
    }
    // As committed, the example Secret cannot be deployed: the service refuses it.
    let example = secret_values(false);
    let mut refused = Config { environment: myscanner::config::Environment::Production, ..Config::default() };
    refused.auth.jwt_secret = myscanner::config::Secret::new(&example["MYSCANNER_AUTH__JWT_SECRET"]);
    assert!(refused.validate().is_err(), "the example's JWT secret must not pass");
    let secret = secret_values(true);

    let db = manifests.get("Cluster", "myscanner-db");
    let mq = manifests.get("RabbitmqCluster", "myscanner-mq");
    assert_eq!(db["spec"]["instances"], 3);
    assert_eq!(mq["spec"]["replicas"], 3, "quorum queues keep a majority when a node is lost");
    assert_eq!(mq["spec"]["tls"]["disableNonTLSListeners"], true);

    let mut connections = 0;
    let mut roles = BTreeSet::new();
    for object in manifests.all("Deployment").chain(manifests.all("Job")) {
        let name = str_of(&object["metadata"]["name"]);
        let template = &object["spec"]["template"];
        let pod = &template["spec"];
        let [container] = pod["containers"].as_array().unwrap().as_slice() else { panic!("{name}: one container") };
        let env = environment(&manifests, container, &secret);
        let config = super::config_from_env(
            &env.iter()
                .filter(|(k, _)| k.starts_with("MYSCANNER_"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>(),
        );
        config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        let labels = &template["metadata"]["labels"];
        let role = str_of(&labels["app.kubernetes.io/component"]);
        let workload = Workload { object, name, role, pod, container, labels, env, config };
        roles.insert(role);

        check_command_and_privileges(&workload);
        check_database(&manifests, &workload, db);
        check_broker(&manifests, &workload, mq);
        let pool = i64::from(workload.config.database.max_connections);
        if workload.is_job() {
            connections += pool;
            continue;
        }
        check_http(&manifests, &workload);
        check_role(&manifests, &workload);
        // Each pod: its pool, a LISTEN connection each for the remote registry and for sync,
        // and the ingest consumer's two; as many pods as can run at once.
        let consumer = if workload.config.ingest.enabled { 2 } else { 0 };
        connections += most_pods(&manifests, &workload) * (pool + 2 + consumer);
    }
    assert_eq!(roles, BTreeSet::from(["api", "ingest", "migrate", "security"]));

    let max_connections: i64 = str_of(&db["spec"]["postgresql"]["parameters"]["max_connections"]).parse().unwrap();
    assert!(
        connections <= max_connections - RESERVED_CONNECTIONS,
        "the service may open {connections} connections; PostgreSQL allows {max_connections}"
    );

    // Scanners reach the broker on the port broker.device_url names, through TLS only.
    let devices = &manifests.get("Service", "myscanner-mq-devices")["spec"];
    assert_eq!(devices["selector"]["app.kubernetes.io/name"], mq["metadata"]["name"]);
    let [port] = devices["ports"].as_array().unwrap().as_slice() else { panic!("one port for scanners") };
    assert_eq!((int_of(&port["port"]), int_of(&port["targetPort"])), (5671, 5671));
    let config_map = &manifests.get("ConfigMap", "myscanner-config")["data"];
    assert_eq!(Url::parse(str_of(&config_map["MYSCANNER_BROKER__DEVICE_URL"])).unwrap().port(), Some(5671));

    // Nothing comes in unless allowed.
    let deny = &manifests.get("NetworkPolicy", "default-deny-ingress")["spec"];
    assert_eq!((&deny["podSelector"], &deny["policyTypes"]), (&json!({}), &json!(["Ingress"])));
    assert!(deny.get("ingress").is_none());
}

/// The service's own command line, as the image's non-root user, with nothing to escalate
/// to and nothing to write.
fn check_command_and_privileges(w: &Workload) {
    let (name, pod, container) = (w.name, w.pod, w.container);
    assert_eq!(container["image"], IMAGE, "{name} runs the one image");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(str_of).collect();
    let cli = <myscanner::cli::Cli as clap::Parser>::try_parse_from(std::iter::once("myscanner").chain(args))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(match w.is_job() {
        true => w.role == "migrate" && matches!(cli.command, myscanner::cli::Command::Migrate),
        false => matches!(cli.command, myscanner::cli::Command::Serve),
    });

    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let uid = int_of(&pod["securityContext"]["runAsUser"]);
    assert!(super::DOCKERFILE.contains(&format!("--uid {uid} ")), "the Dockerfile's user is {uid}");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
    let context = &container["securityContext"];
    assert_eq!(context["allowPrivilegeEscalation"], false);
    assert_eq!(context["readOnlyRootFilesystem"], true);
    assert_eq!(context["capabilities"]["drop"], json!(["ALL"]));
    assert!(context["capabilities"].get("add").is_none() && context.get("privileged").is_none(), "{name}");
    let resources = &container["resources"];
    assert!(resources["requests"]["memory"].is_string() && resources["limits"]["memory"].is_string(), "{name}");
}

/// CloudNativePG's read-write Service, its database and owner, verified against the
/// cluster's CA, mounted where the URL says; and a NetworkPolicy that lets the pod there.
fn check_database(manifests: &Manifests, w: &Workload, db: &Value) {
    let db_name = str_of(&db["metadata"]["name"]);
    let url = w.config.database.url.expose();
    assert!(myscanner::db::verifies_its_peer(url).unwrap());
    let url = Url::parse(url).unwrap();
    assert_eq!(url.host_str(), Some(format!("{db_name}-rw").as_str()));
    assert_eq!(url.path(), format!("/{}", str_of(&db["spec"]["bootstrap"]["initdb"]["database"])));
    assert_eq!(url.username(), str_of(&db["spec"]["bootstrap"]["initdb"]["owner"]));
    let query: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["sslmode"], "verify-full");
    assert_eq!(mounted_file(w.pod, w.container, &query["sslrootcert"]), (format!("{db_name}-ca"), "ca.crt".into()));
    let port = i64::from(url.port().unwrap_or(5432));
    assert!(manifests.may_reach(w.labels, ("cnpg.io/cluster", db_name), port), "{} cannot reach PostgreSQL", w.name);
}

/// The RabbitMQ cluster's Service: AMQPS for the ingest consumer, the management API over
/// TLS for the API (device broker users). The roles that open those links trust the
/// broker's CA, and only they may reach the broker.
fn check_broker(manifests: &Manifests, w: &Workload, mq: &Value) {
    let mq_name = str_of(&mq["metadata"]["name"]);
    let broker = Url::parse(w.config.broker.url.expose()).unwrap();
    assert_eq!((broker.scheme(), broker.host_str(), broker.port()), ("amqps", Some(mq_name), Some(5671)));
    let management = Url::parse(&w.config.broker.management_url).unwrap();
    assert_eq!((management.scheme(), management.host_str(), management.port()), ("https", Some(mq_name), Some(15671)));
    assert!(w.config.broker.device_url.starts_with("amqps://"));
    // `migrate` runs no consumer, whatever ingest.enabled says.
    let (amqp, api) = (w.config.ingest.enabled && !w.is_job(), w.role == "api");
    match w.env.get("SSL_CERT_FILE") {
        Some(path) => {
            let tls_secret = str_of(&mq["spec"]["tls"]["secretName"]);
            assert_eq!(mounted_file(w.pod, w.container, path), (tls_secret.to_owned(), "ca.crt".to_owned()));
        }
        None => assert!(!amqp && !api, "{} links to the broker without trusting its CA", w.name),
    }
    let mq_pods = ("app.kubernetes.io/name", mq_name);
    assert_eq!(manifests.may_reach(w.labels, mq_pods, 5671), amqp, "{}: AMQPS", w.name);
    assert_eq!(manifests.may_reach(w.labels, mq_pods, 15671), api, "{}: management API", w.name);
}

/// The one HTTP port: the service's, the container's, the probes' (on routes the service
/// has), and time enough to drain it.
fn check_http(manifests: &Manifests, w: &Workload) {
    let (name, container) = (w.name, w.container);
    let listen = w.config.server.listen;
    assert!(listen.ip().is_unspecified(), "{name} must listen on the pod's addresses");
    let declared = container["ports"].as_array().unwrap();
    assert!(declared.iter().any(|p| p["name"] == "http" && int_of(&p["containerPort"]) == i64::from(listen.port())));
    let openapi: Value = serde_json::from_str(&myscanner::http::openapi::spec_json()).unwrap();
    for (probe, path) in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!((&get["path"], &get["port"]), (&path.into(), &"http".into()), "{name} {probe}");
        assert!(openapi["paths"].get(path).is_some(), "{path} is not a route of the service");
    }
    // A pod behind a Service waits for the endpoints to forget it before it stops.
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"][1].as_str().map(|s| s.parse::<i64>().unwrap());
    assert_eq!(pre_stop.is_some(), w.role == "api", "{name}: preStop");
    let grace = int_of(&w.pod["terminationGracePeriodSeconds"]);
    let drain = w.config.server.request_timeout_secs as i64 + REMOTE_SHUTDOWN_SECS + pre_stop.unwrap_or(0);
    assert!(grace >= drain, "{name}: {grace} s to stop, but draining takes up to {drain} s");
    assert!(
        manifests.all("PodDisruptionBudget").any(|p| selects(&p["spec"]["selector"], w.labels)),
        "{name} has no PodDisruptionBudget"
    );
}

/// Each role by its switches, and what it alone needs.
fn check_role(manifests: &Manifests, w: &Workload) {
    let (config, security, name) = (&w.config, &w.config.security, w.name);
    match w.role {
        "api" => {
            assert!(!config.ingest.enabled && !security.scheduler && security.workers == 0, "{name}");
            let port = w.config.server.listen.port();
            assert_eq!(config.remote.advertise_url.as_deref(), Some(format!("http://{POD_IP}:{port}").as_str()));
            check_api_exposure(manifests, w);
        }
        "ingest" => assert!(config.ingest.enabled && !security.scheduler && security.workers == 0, "{name}"),
        "security" => {
            assert!(!config.ingest.enabled && security.scheduler && security.workers > 0, "{name}");
            // What external scans may contact is what the pods may reach, on every TCP port.
            let allowed: BTreeSet<String> = security.allowed_targets.iter().map(ToString::to_string).collect();
            let mut reachable = BTreeSet::new();
            for rule in manifests.egress_rules(w.labels) {
                for block in rule["to"].as_array().into_iter().flatten().filter_map(|peer| peer.get("ipBlock")) {
                    let every_port = rule["ports"].as_array().unwrap().iter().all(|p| p.get("port").is_none());
                    assert!(every_port, "scans reach every port of their targets");
                    reachable.insert(str_of(&block["cidr"]).to_owned());
                }
            }
            assert!(!allowed.is_empty());
            assert_eq!(allowed, reachable, "allowed_targets and the scan-target NetworkPolicy differ");
        }
        other => panic!("{name}: unknown role {other}"),
    }
}

/// The API behind its Service and the Ingress, reached by the ingress controller and by the
/// other API pods (sessions relayed to the pod holding a tunnel, at its advertised address).
fn check_api_exposure(manifests: &Manifests, w: &Workload) {
    let port = i64::from(w.config.server.listen.port());
    let service = &manifests.get("Service", "myscanner-api")["spec"];
    assert!(selects(&json!({"matchLabels": service["selector"]}), w.labels));
    let [http] = service["ports"].as_array().unwrap().as_slice() else { panic!("one port") };
    assert_eq!((&http["name"], &http["targetPort"]), (&"http".into(), &"http".into()));
    let reached_by = |peer: &dyn Fn(&Value) -> bool| {
        let rules = manifests.ingress_rules(w.labels);
        rules.iter().any(|rule| ports(rule).contains(&port) && rule["from"].as_array().unwrap().iter().any(peer))
    };
    assert!(reached_by(
        &|from| from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "ingress-nginx"
    ));
    assert!(reached_by(&|from| from.get("namespaceSelector").is_none() && selects(&from["podSelector"], w.labels)));
    assert!(manifests.may_reach(w.labels, ("app.kubernetes.io/component", "api"), port), "relays between API pods");

    // TLS for every host, to the Service's HTTP port, with limits that let the service answer.
    let ingress = manifests.get("Ingress", "myscanner");
    let spec = &ingress["spec"];
    assert_eq!(spec["ingressClassName"], "nginx");
    let tls_hosts: BTreeSet<&str> = spec["tls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["hosts"].as_array().unwrap().iter().map(str_of))
        .collect();
    for rule in spec["rules"].as_array().unwrap() {
        assert!(tls_hosts.contains(str_of(&rule["host"])), "{} is served without TLS", rule["host"]);
        let backend = &rule["http"]["paths"][0]["backend"]["service"];
        assert_eq!((&backend["name"], &backend["port"]["name"]), (&"myscanner-api".into(), &"http".into()));
    }
    let annotation =
        |key: &str| str_of(&ingress["metadata"]["annotations"][format!("nginx.ingress.kubernetes.io/{key}")]);
    let (server, remote) = (&w.config.server, &w.config.remote);
    for timeout in ["proxy-read-timeout", "proxy-send-timeout"] {
        let secs: u64 = annotation(timeout).parse().unwrap();
        assert!(secs > remote.idle_timeout_secs, "{timeout} would cut idle remote sessions short");
        assert!(secs > server.request_timeout_secs, "{timeout} would cut requests short");
    }
    assert!(nginx_size(annotation("proxy-body-size")) > server.body_limit_bytes as u64, "nginx would refuse first");
}

/// How many pods of a Deployment may run at once: its replicas, or its autoscaler's
/// maximum, plus the rollout's surplus.
fn most_pods(manifests: &Manifests, w: &Workload) -> i64 {
    let spec = &w.object["spec"];
    let autoscaler = manifests.all("HorizontalPodAutoscaler").find(|h| h["spec"]["scaleTargetRef"]["name"] == w.name);
    let most = match autoscaler {
        Some(hpa) => {
            assert!(spec.get("replicas").is_none(), "{}: the autoscaler owns the count", w.name);
            assert_eq!(hpa["apiVersion"], "autoscaling/v2");
            assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
            assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
            int_of(&hpa["spec"]["maxReplicas"])
        }
        None => int_of(&spec["replicas"]),
    };
    most + int_of(&spec["strategy"]["rollingUpdate"]["maxSurge"])
}
