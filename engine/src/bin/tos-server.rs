//! `tos-server`: the world server binary.

fn main() {
    eprintln!("tos-server: the engine has not landed yet; see docs/ROADMAP.md");
    std::process::exit(2);
}
