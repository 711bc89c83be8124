//! The 1Password CLI stand-in (`tests/support/op_stand_in.py`, op 2's
//! grammar for `read`, `item` and `document`) as `op` on a `PATH` of its
//! own, its vaults in a temp dir.

use std::fs;

use super::repo_root;

pub struct OpStandIn {
    dir: tempfile::TempDir,
    path: String,
}

impl OpStandIn {
    /// A 1Password account with the one, empty, vault `vault`.
    pub fn with_vault(vault: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(
            repo_root().join("tests/support/op_stand_in.py"),
            bin.join("op"),
        )
        .unwrap();
        fs::write(
            dir.path().join("items.json"),
            serde_json::json!({ vault: {} }).to_string(),
        )
        .unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        OpStandIn { dir, path }
    }

    /// The environment that makes `op` this stand-in.
    pub fn env(&self) -> [(&str, &str); 2] {
        [
            ("PATH", self.path.as_str()),
            ("OP_STAND_IN_DIR", self.dir.path().to_str().unwrap()),
        ]
    }

    /// Every item's fields, by vault and title.
    pub fn items(&self) -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(self.dir.path().join("items.json")).unwrap())
            .unwrap()
    }

    /// Sets field `field` of item `item` in `vault` (`None`: removes the
    /// field), as someone editing the item in 1Password.
    pub fn set_field(&self, vault: &str, item: &str, field: &str, value: Option<&str>) {
        let path = self.dir.path().join("items.json");
        let mut state = self.items();
        match value {
            Some(value) => state[vault][item][field] = value.into(),
            None => {
                if let Some(fields) = state[vault][item].as_object_mut() {
                    fields.remove(field);
                }
            }
        }
        fs::write(&path, state.to_string()).unwrap();
    }

    /// The Document item `item` of `vault`: its file's name and contents.
    pub fn document(&self, vault: &str, item: &str) -> Option<(String, String)> {
        let state: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(self.dir.path().join("documents.json")).ok()?)
                .unwrap();
        let document = state.get(vault)?.get(item)?;
        Some((
            document["file_name"].as_str().unwrap().to_string(),
            document["content"].as_str().unwrap().to_string(),
        ))
    }

    /// Replaces the file of a document, as someone editing it in 1Password.
    pub fn set_document(&self, vault: &str, item: &str, content: &str) {
        let path = self.dir.path().join("documents.json");
        let mut state: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        state[vault][item]["content"] = content.into();
        fs::write(&path, state.to_string()).unwrap();
    }

    /// Every call so far, as the stand-in logged it (whole command lines).
    pub fn calls(&self) -> String {
        fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default()
    }
}
