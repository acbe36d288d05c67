//! docker-compose.yml and deploy/Dockerfile cannot run here (no container engine), so they
//! are checked against the service's configuration instead: every MYSCANNER_* variable is a
//! real setting of the right type, and names, hosts and ports agree.

use myscanner::config::Config;
use serde_json::Value;

const COMPOSE: &str = include_str!("../../../docker-compose.yml");
const DOCKERFILE: &str = include_str!("../../../deploy/Dockerfile");

/// `${VAR:-default}` as compose would expand it with VAR unset.
fn expand(value: &str) -> String {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
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
    serde_json::from_value(tree).unwrap_or_else(|e| panic!("the compose environment does not fit the config: {e}"))
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
    assert!(services["postgres"]["ports"].as_array().unwrap().iter().any(|p| p == "5432:5432"));
    assert!(services["rabbitmq"]["ports"].as_array().unwrap().iter().any(|p| p == "5672:5672"));

    // The image builds the service and runs `serve`.
    assert!(DOCKERFILE.contains("cargo build --release --locked -p myscanner"));
    assert!(DOCKERFILE.contains(r#"ENTRYPOINT ["myscanner"]"#) && DOCKERFILE.contains(r#"CMD ["serve"]"#));
}
