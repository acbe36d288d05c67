//! docker-compose.yml and deploy/Dockerfile cannot run here (no container engine), so they
//! are checked against the service's configuration instead: every MYSCANNER_* variable is a
//! real setting of the right type, and names, hosts and ports agree. The Kubernetes
//! manifests likewise, in `kubernetes`.

mod kubernetes;

use myscanner::config::Config;
use serde_json::Value;

const COMPOSE: &str = include_str!("../../../docker-compose.yml");
const DOCKERFILE: &str = include_str!("../../../deploy/Dockerfile");

/// A stand-in for what an operator sets where compose demands a value (`${VAR:?why}`).
const OPERATOR_SECRET: &str = "0123456789abcdef0123456789abcdef-set-by-the-operator";

/// `${VAR:-default}` as compose would expand it with VAR unset; `${VAR:?why}` as the
/// operator must set it.
fn expand(value: &str) -> String {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(inner) if inner.contains(":?") => OPERATOR_SECRET.to_owned(),
        Some(inner) => inner.split_once(":-").map_or("", |(_, default)| default).to_owned(),
        None => value.to_owned(),
    }
}

/// Applies `MYSCANNER_A__B=value` variables the way the service's layered config does and
/// deserialises the result, so a misspelt key or a wrong type fails here.
fn config_from_env(vars: &[(String, String)]) -> Config {
    let mut tree = serde_json::to_value(Config::default()).unwrap();
    for (key, value) in vars {
        let path: Vec<String> = key.strip_prefix("MYSCANNER_").unwrap().split("__").map(str::to_lowercase).collect();
        let mut node = &mut tree;
        for part in &path {
            node = node.get_mut(part).unwrap_or_else(|| panic!("{key} is not a setting of the service"));
        }
        *node = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.clone()));
    }
    serde_json::from_value(tree).unwrap_or_else(|e| panic!("the environment does not fit the config: {e}"))
}

#[test]
fn compose_and_dockerfile_agree_with_the_service() {
    let compose: Value = serde_yaml_ng::from_str(COMPOSE).unwrap();
    let services = compose["services"].as_object().unwrap();
    for name in ["postgres", "rabbitmq", "myscanner"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let app = &services["myscanner"];
    assert_eq!(app["build"]["dockerfile"], "deploy/Dockerfile");
    let vars: Vec<(String, String)> =
        app["environment"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), expand(v.as_str().unwrap()))).collect();
    assert!(vars.iter().all(|(k, _)| k.starts_with("MYSCANNER_")));
    let config = config_from_env(&vars);
    config.validate().unwrap();

    // The published port is the one the service listens on, and the one the image exposes.
    let port = config.server.listen.port();
    assert!(config.server.listen.ip().is_unspecified(), "inside a container the service must listen on all interfaces");
    let ports: Vec<&str> = app["ports"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(ports.iter().any(|p| p.ends_with(&format!(":{port}"))), "{ports:?} does not publish {port}");
    assert!(DOCKERFILE.contains(&format!("EXPOSE {port}")));
    assert!(DOCKERFILE.contains(&format!("MYSCANNER_SERVER__LISTEN=0.0.0.0:{port}")));

    // The database URL names the postgres service with its credentials and database.
    let url = config.database.url.expose();
    let pg = &services["postgres"]["environment"];
    let expected = format!(
        "postgres://{}:{}@postgres:5432/{}",
        pg["POSTGRES_USER"].as_str().unwrap(),
        pg["POSTGRES_PASSWORD"].as_str().unwrap(),
        pg["POSTGRES_DB"].as_str().unwrap()
    );
    assert_eq!(url, expected);
    // The broker URL names the rabbitmq service with the account it creates.
    let mq = &services["rabbitmq"]["environment"];
    let (user, pass) = (mq["RABBITMQ_DEFAULT_USER"].as_str().unwrap(), mq["RABBITMQ_DEFAULT_PASS"].as_str().unwrap());
    assert_eq!(config.broker.url.expose(), format!("amqp://{user}:{pass}@rabbitmq:5672/%2f"));
    assert_eq!((config.broker.management_username.as_str(), config.broker.management_password.expose()), (user, pass));

    // Nothing is published beyond this machine, and the JWT secret is never one from here.
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            assert!(port.as_str().unwrap().starts_with("127.0.0.1:"), "{name} publishes {port} on every interface");
        }
    }
    assert!(services["postgres"].get("ports").is_none(), "the database stays on the compose network");
    assert_eq!(config.auth.jwt_secret.expose(), OPERATOR_SECRET, "the JWT secret must be the operator's own");

    // The image builds the service and runs `serve`.
    assert!(DOCKERFILE.contains("cargo build --release --locked -p myscanner"));
    assert!(DOCKERFILE.contains(r#"ENTRYPOINT ["myscanner"]"#) && DOCKERFILE.contains(r#"CMD ["serve"]"#));
    // It builds the web dashboard and serves it from where it copies it.
    assert!(DOCKERFILE.contains("npm ci") && DOCKERFILE.contains("npm run build"));
    let web_dir = DOCKERFILE.split("MYSCANNER_SERVER__WEB_DIR=").nth(1).unwrap().split_whitespace().next().unwrap();
    assert!(DOCKERFILE.contains(&format!("COPY --from=web /src/web/dist {web_dir}")), "the image serves {web_dir}");
}

const SERVICE_UNIT: &str = include_str!("../../../deploy/systemd/myscanner.service");
const AGENT_UNIT: &str = include_str!("../../../deploy/systemd/myscanner-agent.service");

/// The value of `key=` in a unit (the last one set, as systemd reads it).
fn unit_value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines().rev().find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn systemd_units_run_the_real_commands_restart_on_failure_and_hold_no_more_privilege_than_needed() {
    let command = unit_value(SERVICE_UNIT, "ExecStart").unwrap();
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args[0], "/usr/local/bin/myscanner");
    <myscanner::cli::Cli as clap::Parser>::try_parse_from(args).expect("the service unit's command line parses");
    assert!(unit_value(AGENT_UNIT, "ExecStart").unwrap().starts_with("/usr/local/bin/myscanner-agent run --config "));
    for unit in [SERVICE_UNIT, AGENT_UNIT] {
        assert_eq!(unit_value(unit, "Restart"), Some("on-failure"));
        assert_eq!(unit_value(unit, "NoNewPrivileges"), Some("yes"));
        assert!(unit_value(unit, "User").is_some_and(|user| user != "root"));
    }
    // The agent's one privilege, raw ARP, only as an ambient capability; the service's, port 443.
    assert_eq!(unit_value(AGENT_UNIT, "AmbientCapabilities"), Some("CAP_NET_RAW"));
    // An agent that gave up (status 78: a refused credential, a broken device file) waits
    // for a person rather than knocking every few seconds.
    assert_eq!(unit_value(AGENT_UNIT, "RestartPreventExitStatus"), Some(myscanner_agent::GAVE_UP.to_string().as_str()));
    assert_eq!(unit_value(AGENT_UNIT, "CapabilityBoundingSet"), Some("CAP_NET_RAW"));
    assert!(unit_value(AGENT_UNIT, "RestrictAddressFamilies").unwrap().contains("AF_PACKET"));
    assert_eq!(unit_value(SERVICE_UNIT, "CapabilityBoundingSet"), Some("CAP_NET_BIND_SERVICE"));

    // And systemd itself reads them without complaint (with a stand-in for the binaries,
    // which are not installed here), where systemd is installed.
    if std::process::Command::new("systemd-analyze").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = vec![];
        for (name, unit) in [("myscanner.service", SERVICE_UNIT), ("myscanner-agent.service", AGENT_UNIT)] {
            let stand_in = unit
                .replace("/usr/local/bin/myscanner-agent ", "/bin/true ")
                .replace("/usr/local/bin/myscanner ", "/bin/true ");
            let path = dir.path().join(name);
            std::fs::write(&path, stand_in).unwrap();
            paths.push(path);
        }
        let verified = std::process::Command::new("systemd-analyze").arg("verify").args(&paths).output().unwrap();
        let complaints = String::from_utf8_lossy(&verified.stderr);
        assert!(verified.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
    }
}
