//! The game data of tests that walk and watch rather than fight: shared by
//! the engine's tests and, through `#[path]`, the client SDK's (both crates
//! sit beside `config/`).

/// A copy of the shipped game data under `dir` without spawn groups, for
/// `runtime.game_data_dir`: a new character starts anywhere in its
/// faction's lands, and a test that walks and then checks positions must
/// not meet the monsters that may be waiting there (a death moves it).
pub fn quiet_game_data(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("game-data");
    std::fs::create_dir_all(&data).expect("a game data directory");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/data");
    for entry in std::fs::read_dir(&shipped).expect("config/data") {
        let path = entry.expect("a data file").path();
        if path.extension().is_some_and(|e| e == "ron") {
            std::fs::copy(&path, data.join(path.file_name().unwrap())).expect("copied");
        }
    }
    std::fs::write(data.join("spawns.ron"), "(groups: [])\n").expect("spawns written");
    data
}
