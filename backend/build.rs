// `sqlx::migrate!` embeds the migrations at compile time; without this, cargo would not
// notice a new migration file and an incremental build would silently leave it out.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
