//! Where the labelled text lives: GoEmotions and DailyDialog are read from
//! local files (never downloaded), found through an environment variable or
//! a `shared/data` folder beside or above the working directory.

use std::path::PathBuf;

fn find(env: &str, relative: &str, marker: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .flat_map(|a| [a.join("shared/data"), a.join("../shared/data")])
        .map(|d| d.join(relative))
        .find(|p| p.join(marker).is_file())
}

/// The GoEmotions folder (`train.tsv`, `dev.tsv`, `test.tsv`,
/// `labels.txt`): `$EMORL_GOEMOTIONS_DIR`, else `shared/data/goemotions`.
pub fn goemotions_dir() -> Option<PathBuf> {
    find("EMORL_GOEMOTIONS_DIR", "goemotions", "train.tsv")
}

/// DailyDialog's validation dialogues (its emotion labels beside it):
/// `$EMORL_DAILYDIALOG_DIR/dialogues_validation.txt`, else under
/// `shared/data/dailydialog`.
pub fn dailydialog_file() -> Option<PathBuf> {
    let dir = find(
        "EMORL_DAILYDIALOG_DIR",
        "dailydialog",
        "dialogues_validation.txt",
    )?;
    let file = dir.join("dialogues_validation.txt");
    file.is_file().then_some(file)
}
