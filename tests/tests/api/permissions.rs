//! The permission matrix: each permission allows exactly what it should.

use myscanner_tests::{Tenant, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Actor {
    NoPermission,
    ViewData,
    ControlDevices,
    ManageWorkgroup,
    Operator,
    ApiToken,
}
use Actor::*;

const ALL: [Actor; 6] = [NoPermission, ViewData, ControlDevices, ManageWorkgroup, Operator, ApiToken];

/// An action, and the actors allowed to take it; everyone else gets 403.
struct Action {
    name: &'static str,
    method: Method,
    path: fn(&Tenant) -> String,
    body: fn(&Tenant) -> Value,
    allowed: &'static [Actor],
}

fn actions() -> Vec<Action> {
    let wg = |t: &Tenant| format!("/api/v1/workgroups/{}", t.workgroup_id);
    let none = |_: &Tenant| Value::Null;
    vec![
        Action { name: "read workgroup", method: Method::GET, path: wg, body: none, allowed: &ALL },
        Action { name: "list sites", method: Method::GET, path: |t| t.path("/sites"), body: none, allowed: &ALL },
        Action { name: "list devices", method: Method::GET, path: |t| t.path("/devices"), body: none, allowed: &ALL },
        Action {
            name: "create site",
            method: Method::POST,
            path: |t| t.path("/sites"),
            body: |_| json!({"name": format!("Site {}", Uuid::now_v7()), "time_zone": "UTC"}),
            allowed: &[ManageWorkgroup, Operator],
        },
        Action {
            name: "rename workgroup",
            method: Method::PATCH,
            path: wg,
            body: |_| json!({"name": "Renamed"}),
            allowed: &[ManageWorkgroup, Operator],
        },
        Action {
            name: "list members",
            method: Method::GET,
            path: |t| t.path("/members"),
            body: none,
            allowed: &[ManageWorkgroup, Operator],
        },
        Action {
            name: "create API token",
            method: Method::POST,
            path: |t| t.path("/api-tokens"),
            body: |_| json!({"name": "probe"}),
            // A token reads data: it needs `view_data` beside `manage_workgroup`, which no
            // single-permission member, and no operator, holds (docs/OPERATORS.md).
            allowed: &[],
        },
        Action {
            name: "rename device",
            method: Method::PATCH,
            path: |t| t.path(&format!("/devices/{}", t.device_id)),
            body: |_| json!({"name": "Renamed"}),
            allowed: &[ManageWorkgroup, Operator],
        },
        Action {
            name: "rotate device credential",
            method: Method::POST,
            path: |t| t.path(&format!("/devices/{}/credentials/rotate", t.device_id)),
            body: none,
            allowed: &[ManageWorkgroup, Operator],
        },
        Action {
            name: "provision device",
            method: Method::POST,
            path: |t| t.path("/devices"),
            body: |t| json!({"site_id": t.site_id, "kind": "mps", "serial": format!("P-{}", Uuid::new_v4().simple()), "name": "New"}),
            allowed: &[Operator],
        },
        Action {
            name: "create workgroup",
            method: Method::POST,
            path: |_| "/api/v1/workgroups".into(),
            body: |_| json!({"name": "New"}),
            allowed: &[Operator],
        },
    ]
}

#[tokio::test]
async fn each_permission_allows_exactly_what_it_should() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let mut tokens = vec![];
    for actor in ALL {
        let token = match actor {
            NoPermission => app.member(&tenant.admin_token, tenant.workgroup_id, &[]).await.1,
            ViewData => app.member(&tenant.admin_token, tenant.workgroup_id, &["view_data"]).await.1,
            ControlDevices => app.member(&tenant.admin_token, tenant.workgroup_id, &["control_devices"]).await.1,
            ManageWorkgroup => app.member(&tenant.admin_token, tenant.workgroup_id, &["manage_workgroup"]).await.1,
            Operator => operator.clone(),
            ApiToken => tenant.api_token.clone(),
        };
        tokens.push((actor, token));
    }

    let mut failures = vec![];
    for action in actions() {
        for (actor, token) in &tokens {
            let mut request = app.request(action.method.clone(), &(action.path)(&tenant), Some(token));
            let body = (action.body)(&tenant);
            if !body.is_null() {
                request = request.json(&body);
            }
            let status = request.send().await.unwrap().status();
            let allowed = action.allowed.contains(actor);
            if allowed != status.is_success() || (!allowed && status != StatusCode::FORBIDDEN) {
                failures.push(format!("{actor:?} {} -> {status} (allowed: {allowed})", action.name));
            }
        }
    }
    assert!(failures.is_empty(), "permission matrix violated:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn a_removed_permission_takes_effect_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let (user_id, token) = app.member(&tenant.admin_token, tenant.workgroup_id, &["manage_workgroup"]).await;
    let members = tenant.path("/members");
    assert_eq!(app.get(&members, &token).await.status(), StatusCode::OK);
    let demote =
        app.patch(&format!("{members}/{user_id}"), &tenant.admin_token, json!({"permissions": ["view_data"]})).await;
    assert_eq!(demote.status(), StatusCode::OK);
    assert_eq!(
        app.get(&members, &token).await.status(),
        StatusCode::FORBIDDEN,
        "the same session token, new permissions"
    );
    let remove = app.delete(&format!("{members}/{user_id}"), &tenant.admin_token).await;
    assert_eq!(remove.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&members, &token).await.status(),
        StatusCode::NOT_FOUND,
        "no longer a member: the workgroup is gone for them"
    );
}

#[tokio::test]
async fn a_workgroup_keeps_a_manager() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let me = tenant.path(&format!("/members/{}", tenant.admin_id));
    let demote = app.patch(&me, &tenant.admin_token, json!({"permissions": ["view_data"]})).await;
    myscanner_tests::expect_problem(demote, StatusCode::CONFLICT, "last-manager").await;
    let leave = app.delete(&me, &tenant.admin_token).await;
    myscanner_tests::expect_problem(leave, StatusCode::CONFLICT, "last-manager").await;
    // With a second manager, the first may step down.
    app.member(&tenant.admin_token, tenant.workgroup_id, &["manage_workgroup"]).await;
    assert_eq!(app.delete(&me, &tenant.admin_token).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn only_operators_add_existing_accounts_to_a_workgroup() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let b = app.tenant(&operator, "Bolt").await;
    let email = app.me(&a.admin_token).await["email"].as_str().unwrap().to_owned();
    let members = b.path("/members");
    // B's manager cannot pull A's admin's account (nor learn its name or reset its password).
    let body = json!({"email": email.to_uppercase(), "name": "Someone", "password": "chosen-by-b-manager", "permissions": ["view_data"]});
    let refused = app.post(&members, &b.admin_token, body.clone()).await;
    let problem = myscanner_tests::expect_problem(refused, StatusCode::CONFLICT, "account-exists").await;
    assert!(!problem.to_string().contains("Test User"));
    app.login(&email, myscanner_tests::PASSWORD).await; // password untouched
    // An operator, who has checked who the account belongs to, can.
    let added = app.post(&members, &operator, json!({"email": email, "permissions": ["view_data"]})).await;
    assert_eq!(added.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_operator_never_grants_themselves_a_membership() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let me = app.me(&operator).await;
    let members = t.path("/members");
    let own = json!({"email": me["email"], "permissions": ["view_data", "control_devices"]});
    let refused = app.post(&members, &operator, own.clone()).await;
    myscanner_tests::expect_problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
    let data = t.path("/measurements");
    myscanner_tests::expect_problem(app.get(&data, &operator).await, StatusCode::FORBIDDEN, "forbidden").await;
    // Another operator adds them; then they read data like any member.
    let colleague = app.operator().await;
    let added = app.post(&members, &colleague, json!({"email": me["email"], "permissions": ["view_data"]})).await;
    assert_eq!(added.status(), StatusCode::CREATED);
    myscanner_tests::expect_json(app.get(&data, &operator).await, StatusCode::OK).await;
}

#[tokio::test]
async fn create_operator_refuses_an_existing_account_unless_told_and_then_resets_its_password() {
    use myscanner::admin::{Existing, create_operator};
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    // An account a workgroup manager created, with a password the manager chose.
    let (_, session) = app.member(&t.admin_token, t.workgroup_id, &["view_data"]).await;
    let me = app.me(&session).await;
    let email = me["email"].as_str().unwrap();

    let refused = create_operator(&app.db, email, "Ops", None, Existing::Refuse).await.unwrap_err();
    assert!(refused.to_string().contains("--promote-existing"), "{refused}");
    assert_eq!(app.me(&session).await["is_operator"], false);

    create_operator(
        &app.db,
        email,
        "Ops",
        Some("the operator's own password".into()),
        Existing::PromoteAndResetPassword,
    )
    .await
    .unwrap();
    // The manager's password and sessions are gone (on every replica within a second: the
    // command runs apart from the service); the operator's password works.
    myscanner_tests::past_remembered_callers().await;
    myscanner_tests::expect_problem(app.get("/api/v1/me", &session).await, StatusCode::UNAUTHORIZED, "unauthorized")
        .await;
    assert_eq!(app.login_response(email, myscanner_tests::PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    let promoted = app.login(email, "the operator's own password").await;
    assert_eq!(app.me(&promoted).await["is_operator"], true);
    // Again, for an operator: nothing to refuse, the password stays.
    create_operator(&app.db, email, "Ops", None, Existing::Refuse).await.unwrap();
    app.login(email, "the operator's own password").await;
}
