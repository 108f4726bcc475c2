//! The client's saved settings: `~/.config/kiln/config.toml` (or
//! `$XDG_CONFIG_HOME/kiln/config.toml`), written by `kiln login` with mode
//! 0600 because it holds a token. Flags and environment variables win over it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What `kiln login` saves.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub server: Option<String>,
    pub token: Option<String>,
    /// Extra CA certificates (PEM) to trust for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// Where the config file lives.
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("kiln").join("config.toml"))
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path} is not a valid kiln config ({source}); fix it or run `kiln login` again")]
    Invalid {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no home directory to keep the config in (set HOME or XDG_CONFIG_HOME)")]
    NoHome,
}

/// The saved settings, or defaults when there is no file.
pub fn load() -> Result<ClientConfig, ConfigError> {
    let Some(path) = path() else {
        return Ok(ClientConfig::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|source| ConfigError::Invalid { path, source }),
        Err(_) => Ok(ClientConfig::default()),
    }
}

/// Save the settings, readable by the owner only.
pub fn save(config: &ClientConfig) -> Result<PathBuf, ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = path().ok_or(ConfigError::NoHome)?;
    let write_err = |source| ConfigError::Write {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let text = toml::to_string(config).expect("the config serializes");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(write_err)?;
    // An older file may have been created with looser permissions.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    Ok(path)
}
