//! Migrations apply cleanly to an empty database, and again as a no-op.

use myscanner::db::MIGRATOR;

#[tokio::test]
async fn migrations_apply_to_an_empty_database() {
    let db = myscanner_tests::connect(&myscanner_tests::create_database().await).await;
    MIGRATOR.run(&db).await.unwrap();
    MIGRATOR.run(&db).await.expect("a second run is a no-op");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for expected in [
        "api_tokens",
        "device_credentials",
        "devices",
        "login_throttle",
        "memberships",
        "platform_operators",
        "sites",
        "users",
        "workgroups",
    ] {
        assert!(tables.iter().any(|t| t == expected), "missing table {expected}: {tables:?}");
    }
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&db).await.unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());
}
