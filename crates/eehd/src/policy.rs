//! Who may act as which VM, and who is an operator: the policy file.
//!
//! ```toml
//! # Operators: whole-host state, every VM's claims, injection.
//! [operators]
//! uids = [1000]
//! gids = [27]
//!
//! # uid 2001 (or anyone in group 2001) may act as "web-1" and any VM
//! # whose name starts with "web-".
//! [[vm]]
//! names = ["web-1", "web-*"]
//! uids = [2001]
//! gids = [2001]
//! ```
//!
//! Root (uid 0) is always an operator and may act as any VM; without a file
//! that is all anyone may do. Names ending in `*` match by prefix.

use std::path::Path;

use serde::Deserialize;

/// A peer's credentials, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Peer {
    /// The credentials of the peer of a connected socket.
    pub fn of(fd: impl std::os::fd::AsFd) -> std::io::Result<Self> {
        let cred = crate::seqpacket::peer_credentials(fd)?;
        Ok(Peer { pid: cred.pid.as_raw_nonzero().get(), uid: cred.uid.as_raw(), gid: cred.gid.as_raw() })
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("Cannot read policy file {file}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("{file}:{line}: {what}")]
    Invalid {
        /// The file.
        file: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

/// A set of users and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Principals {
    #[serde(default)]
    uids: Vec<u32>,
    #[serde(default)]
    gids: Vec<u32>,
}

impl Principals {
    fn includes(&self, peer: Peer) -> bool {
        self.uids.contains(&peer.uid) || self.gids.contains(&peer.gid)
    }
}

/// VM names and who may act as them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmGrant {
    names: Vec<String>,
    #[serde(default)]
    uids: Vec<u32>,
    #[serde(default)]
    gids: Vec<u32>,
}

impl VmGrant {
    fn names_vm(&self, vm: &str) -> bool {
        self.names.iter().any(|name| match name.strip_suffix('*') {
            Some(prefix) => vm.starts_with(prefix),
            None => name == vm,
        })
    }
}

/// The policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    operators: Principals,
    #[serde(default, rename = "vm")]
    vms: Vec<VmGrant>,
}

impl Policy {
    /// Reads a policy file.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read { file: file.clone(), source })?;
        Self::from_toml_str(&text, &file)
    }

    /// Parses policy text; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|error| PolicyError::Invalid {
            file: file.to_owned(),
            line: error.span().map_or(1, |span| line_of(text, span.start)),
            what: error.message().to_owned(),
        })?;
        if let Some(grant) = policy.vms.iter().find(|g| g.names.iter().any(String::is_empty)) {
            let line = text.find("names").map_or(1, |at| line_of(text, at));
            return Err(PolicyError::Invalid {
                file: file.to_owned(),
                line,
                what: format!("empty VM name in {:?}", grant.names),
            });
        }
        Ok(policy)
    }

    /// Whether the peer may make operator requests.
    pub fn is_operator(&self, peer: Peer) -> bool {
        peer.uid == 0 || self.operators.includes(peer)
    }

    /// Whether the peer may act as VM `vm`.
    pub fn may_act_as(&self, peer: Peer, vm: &str) -> bool {
        peer.uid == 0
            || self
                .vms
                .iter()
                .any(|grant| grant.names_vm(vm) && (grant.uids.contains(&peer.uid) || grant.gids.contains(&peer.gid)))
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: Peer = Peer { pid: 1, uid: 0, gid: 0 };
    const ALICE: Peer = Peer { pid: 2, uid: 1000, gid: 1000 };
    const BOB: Peer = Peer { pid: 3, uid: 1001, gid: 27 };

    #[test]
    fn without_a_file_only_root_acts() {
        let policy = Policy::default();
        assert!(policy.is_operator(ROOT) && policy.may_act_as(ROOT, "any"));
        assert!(!policy.is_operator(ALICE) && !policy.may_act_as(ALICE, "any"));
    }

    #[test]
    fn grants_by_uid_gid_and_name_prefix() {
        let text = "[operators]\ngids = [27]\n\n[[vm]]\nnames = [\"db\", \"web-*\"]\nuids = [1000]\n";
        let policy = Policy::from_toml_str(text, "policy.toml").unwrap();
        assert!(policy.is_operator(BOB) && !policy.is_operator(ALICE));
        assert!(policy.may_act_as(ALICE, "db") && policy.may_act_as(ALICE, "web-7"));
        assert!(!policy.may_act_as(ALICE, "dbx") && !policy.may_act_as(ALICE, "web"));
        assert!(!policy.may_act_as(BOB, "db"));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let text = "[operators]\nuids = [0]\n\n[[vm]]\nnames = [\"a\"]\nuid = [5]\n";
        let error = Policy::from_toml_str(text, "/etc/eehd/policy.toml").unwrap_err().to_string();
        assert!(error.starts_with("/etc/eehd/policy.toml:6: "), "{error}");
        let error = Policy::from_toml_str("[[vm]]\nnames = [\"\"]\n", "p.toml").unwrap_err().to_string();
        assert!(error.starts_with("p.toml:2: empty VM name"), "{error}");
        let error = Policy::from_toml_str("[operators]\nuids = [\"x\"]\n", "p.toml").unwrap_err().to_string();
        assert!(error.starts_with("p.toml:2: "), "{error}");
    }
}
