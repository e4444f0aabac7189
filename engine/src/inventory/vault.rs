//! Ansible Vault 1.1 and 1.2 (AES256): whole files and `!vault` values. Takes the envelope
//! text and the passwords; gives the plain text. PBKDF2-HMAC-SHA256 (10,000 rounds) derives
//! the AES-256-CTR key, the HMAC-SHA256 key and the counter; the HMAC is checked before
//! anything is decrypted.

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};

pub(crate) const HEADER: &str = "$ANSIBLE_VAULT;";

/// The passwords that may open vaulted data, each with its vault id (`default` if none).
#[derive(Debug, Clone, Default)]
pub struct VaultKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl VaultKeys {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds the password in `file` (its first line, as Ansible reads it) under `id`.
    /// An executable password file (a client script) is not run: fleetbook refuses it.
    pub fn add_file(&mut self, id: &str, file: &Path) -> Result<(), String> {
        let text = std::fs::read(file)
            .map_err(|e| format!("vault password file {}: {e}", file.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o111 != 0) {
                return Err(format!(
                    "vault password file {} is executable: fleetbook does not run vault password scripts; \
                     remove its execute bit or give a plain file",
                    file.display()
                ));
            }
        }
        let text = String::from_utf8_lossy(&text);
        let password = text.trim_end_matches(['\n', '\r']).trim();
        if password.is_empty() {
            return Err(format!("vault password file {} is empty", file.display()));
        }
        self.keys
            .push((id.to_string(), password.as_bytes().to_vec()));
        Ok(())
    }

    /// `--vault-id [ID@]FILE`; `prompt` is refused (there is no terminal to ask at).
    pub fn add_vault_id(&mut self, spec: &str) -> Result<(), String> {
        let (id, file) = match spec.split_once('@') {
            Some((id, file)) => (id, file),
            None => ("default", spec),
        };
        if file == "prompt" {
            return Err(format!(
                "--vault-id {spec}: prompting for a vault password is not supported; give a password file"
            ));
        }
        self.add_file(id, &PathBuf::from(file))
    }

    /// The passwords from `ANSIBLE_VAULT_PASSWORD_FILE` and `ANSIBLE_VAULT_IDENTITY_LIST`.
    pub fn from_env() -> Result<VaultKeys, String> {
        let mut keys = VaultKeys::default();
        if let Ok(list) = std::env::var("ANSIBLE_VAULT_IDENTITY_LIST") {
            for spec in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                keys.add_vault_id(spec)?;
            }
        }
        if let Ok(file) = std::env::var("ANSIBLE_VAULT_PASSWORD_FILE") {
            if !file.is_empty() {
                keys.add_file("default", Path::new(&file))?;
            }
        }
        Ok(keys)
    }

    /// Decrypts one envelope. The matching id is tried first, then every other password.
    pub fn decrypt(&self, envelope: &str) -> Result<String, String> {
        let mut lines = envelope.trim().lines();
        let header = lines.next().unwrap_or_default().trim();
        let fields: Vec<&str> = header.split(';').collect();
        let (version, cipher, label) = match fields.as_slice() {
            ["$ANSIBLE_VAULT", v, c] => (*v, *c, None),
            ["$ANSIBLE_VAULT", v, c, l] => (*v, *c, Some(l.trim())),
            _ => return Err(format!("not a vault header: {header:?}")),
        };
        if !matches!(version, "1.1" | "1.2") {
            return Err(format!(
                "vault format {version} is not supported (1.1 and 1.2 are)"
            ));
        }
        if cipher != "AES256" {
            return Err(format!(
                "vault cipher {cipher} is not supported (AES256 is)"
            ));
        }
        if self.keys.is_empty() {
            return Err(
                "no vault password was given (use --vault-password-file, --vault-id or ANSIBLE_VAULT_PASSWORD_FILE)"
                    .into(),
            );
        }
        let body: String = lines.flat_map(|l| l.trim().chars()).collect();
        let inner = unhex(&body)?;
        let inner =
            String::from_utf8(inner).map_err(|_| "vault payload is not text".to_string())?;
        let parts: Vec<&str> = inner.split('\n').collect();
        let [salt, mac, data] = parts.as_slice() else {
            return Err("vault payload does not have three parts".into());
        };
        let (salt, mac, data) = (unhex(salt)?, unhex(mac)?, unhex(data)?);
        let mut order: Vec<&(String, Vec<u8>)> = self
            .keys
            .iter()
            .filter(|(id, _)| Some(id.as_str()) == label)
            .collect();
        order.extend(
            self.keys
                .iter()
                .filter(|(id, _)| Some(id.as_str()) != label),
        );
        for (_, password) in order {
            let mut derived = [0u8; 80];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, 10_000, &mut derived);
            let (key, rest) = derived.split_at(32);
            let (mac_key, iv) = rest.split_at(32);
            let mut check =
                <Hmac<Sha256> as Mac>::new_from_slice(mac_key).map_err(|e| e.to_string())?;
            check.update(&data);
            if check.verify_slice(&mac).is_err() {
                continue;
            }
            let mut plain = data.clone();
            let mut ctr = ctr::Ctr128BE::<aes::Aes256>::new(key.into(), iv.into());
            ctr.apply_keystream(&mut plain);
            let pad = usize::from(*plain.last().unwrap_or(&0));
            if pad == 0 || pad > 16 || pad > plain.len() {
                return Err("vault payload has bad padding".into());
            }
            plain.truncate(plain.len() - pad);
            return String::from_utf8(plain).map_err(|_| "vaulted data is not UTF-8 text".into());
        }
        Err("no vault password given opens it (HMAC mismatch)".into())
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return Err("vault format unhexlify error: odd-length string".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16)
                .map_err(|_| "vault format unhexlify error: non-hexadecimal digit found".into())
        })
        .collect()
}

/// Whether a file's text is a vault envelope.
pub(crate) fn is_vaulted(text: &str) -> bool {
    text.trim_start().starts_with(HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by ansible-vault 2.19 with the password "secret": `ansible-vault encrypt_string`.
    const ENVELOPE: &str = "$ANSIBLE_VAULT;1.1;AES256
34623462323132643965393762333632396435653836366537633661313764336533646236643333
6566633035366664393366616464633764353930636465340a376339633263373264376466363230
34303563616364636166376534663036656538396330633131366365303836303361656538333332
6165333034613739620a303230306231663539343332636537663438613534313233666637616564
3735";

    #[test]
    fn decrypts_what_ansible_vault_made() {
        let keys = VaultKeys {
            keys: vec![("default".into(), b"secret".to_vec())],
        };
        assert_eq!(keys.decrypt(ENVELOPE).unwrap(), "hunter2-value");
    }

    #[test]
    fn wrong_or_missing_password_is_an_error() {
        let keys = VaultKeys::default();
        assert!(keys
            .decrypt(ENVELOPE)
            .unwrap_err()
            .contains("no vault password"));
        let keys = VaultKeys {
            keys: vec![("default".into(), b"wrong".to_vec())],
        };
        assert!(keys.decrypt(ENVELOPE).unwrap_err().contains("HMAC"));
        assert!(keys
            .decrypt("$ANSIBLE_VAULT;1.1;AES256\nabc")
            .unwrap_err()
            .contains("odd-length"));
    }
}
