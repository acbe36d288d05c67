//! What tests do to RabbitMQ directly, through its management API (guest on loopback):
//! a vhost per test, and the outages a test stages (a killed connection, a deleted queue).

use serde_json::{Value, json};

const API: &str = "http://127.0.0.1:15672/api";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn create_vhost(vhost: &str) {
    let put = |path: String, body: Value| {
        client().put(format!("{API}{path}")).basic_auth("guest", Some("guest")).json(&body).send()
    };
    let response = put(format!("/vhosts/{vhost}"), json!({})).await.expect("RabbitMQ management API (port 15672)");
    assert!(response.status().is_success(), "create vhost: {}", response.status());
    let response = put(format!("/permissions/{vhost}/guest"), json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .await
        .unwrap();
    assert!(response.status().is_success());
}

/// Deletes the vhost (and everything in it) and the device users under `user_prefix`.
pub async fn delete(vhost: &str, user_prefix: &str) {
    let api = |method: reqwest::Method, path: String| {
        client().request(method, format!("{API}{path}")).basic_auth("guest", Some("guest")).send()
    };
    let _ = api(reqwest::Method::DELETE, format!("/vhosts/{vhost}")).await;
    if let Ok(response) = api(reqwest::Method::GET, "/users?columns=name".into()).await {
        let users: Vec<Value> = response.json().await.unwrap_or_default();
        for name in users.iter().filter_map(|u| u["name"].as_str()).filter(|n| n.starts_with(user_prefix)) {
            let _ = api(reqwest::Method::DELETE, format!("/users/{name}")).await;
        }
    }
}

/// Closes every connection of the vhost whose client-given name is `name` (as the
/// broker would on a network failure).
pub async fn kill_connections(vhost: &str, name: &str) -> usize {
    let connections = get_json(&format!("/vhosts/{vhost}/connections")).await;
    let mut killed = 0;
    for connection in
        connections.as_array().into_iter().flatten().filter(|c| c["client_properties"]["connection_name"] == name)
    {
        let id = myscanner::broker::management::encode(connection["name"].as_str().unwrap());
        client().delete(format!("{API}/connections/{id}")).basic_auth("guest", Some("guest")).send().await.unwrap();
        killed += 1;
    }
    killed
}

/// Deletes a queue of the vhost, as an operator might by mistake.
pub async fn delete_queue(vhost: &str, queue: &str) {
    let path = format!("{API}/queues/{vhost}/{}", myscanner::broker::management::encode(queue));
    let response = client().delete(path).basic_auth("guest", Some("guest")).send().await.unwrap();
    assert!(response.status().is_success(), "delete queue: {}", response.status());
}

/// Messages waiting in a queue of the vhost.
pub async fn queue_depth(vhost: &str, queue: &str) -> u64 {
    let info = get_json(&format!("/queues/{vhost}/{}", myscanner::broker::management::encode(queue))).await;
    info["messages"].as_u64().unwrap_or(0)
}

async fn get_json(path: &str) -> Value {
    let response = client().get(format!("{API}{path}")).basic_auth("guest", Some("guest")).send().await.unwrap();
    response.json().await.unwrap()
}
