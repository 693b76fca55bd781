// Rebuild when a migration is added: `sqlx::migrate!` embeds the migrations directory at
// compile time but does not track new files by itself.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
