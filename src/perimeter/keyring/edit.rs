//! The file operations behind `sluice keys gen|list|rotate` and the development ring:
//! each validates the whole file before touching it and replaces it atomically, keeping
//! its owner, group and mode (never wider than 0660).

use super::*;

/// A key just written to a ring file. The secret stays in the file only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub kid: String,
    pub partner: String,
    pub path: PathBuf,
    /// For `rotate`: the grace period the previous keys were given; 0 otherwise.
    pub grace_days: u32,
}

/// One line of `sluice keys list`: everything about a key except its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub partner: String,
    pub not_before_ms: Option<i64>,
    pub not_after_ms: Option<i64>,
    pub grace_days: u32,
    /// `not_after + grace_days`; `None`: no expiry.
    pub accepted_until_ms: Option<i64>,
    pub status: KeyStatus,
}

/// `kid partner status not_before not_after grace_days`, `-` for an absent time.
impl fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |value: Option<i64>| value.map_or_else(|| "-".to_owned(), time_text);
        write!(
            f,
            "{} {:?} {} not_before={} not_after={} grace_days={}",
            self.kid,
            self.partner,
            self.status,
            time(self.not_before_ms),
            time(self.not_after_ms),
            self.grace_days
        )
    }
}

/// Appends a key for `partner` with a fresh kid and secret, creating the file if it is
/// missing. `valid_days`: `not_after = now + days` (1..=`KEY_VALID_DAYS_MAX`); `None`: no
/// expiry. The key is valid at once. Refuses to touch a file that does not validate.
pub fn gen_key(path: &Path, partner: &str, valid_days: Option<u32>, now_ms: i64) -> Result<NewKey, KeyRingError> {
    check_partner_argument(partner)?;
    if let Some(days) = valid_days
        && !(1..=KEY_VALID_DAYS_MAX).contains(&days)
    {
        return Err(KeyRingError::Argument { name: "valid_days", reason: format!("must be 1..={KEY_VALID_DAYS_MAX}") });
    }
    let mut raw = read_raw(path)?.unwrap_or_default();
    let ring = build_ring(&raw, path)?;
    let now_ms = whole_second(now_ms);
    let kid = unused_kid(&ring, now_ms)?;
    let key = match valid_days {
        Some(days) => new_raw_key(kid.clone(), partner, Some(toml::Value::String(time_text(now_ms + i64::from(days) * DAY_MS))), 0),
        None => policy_key(kid.clone(), partner, ring.policy(), now_ms),
    };
    raw.keys.push(key);
    store(path, &raw)?;
    Ok(NewKey { kid, partner: partner.to_owned(), path: path.to_owned(), grace_days: 0 })
}

/// Every key in the file with its status at `now_ms`; never a secret.
pub fn list_keys(path: &Path, now_ms: i64) -> Result<Vec<KeyInfo>, KeyRingError> {
    let ring = KeyRing::load(path)?;
    let info = ring.keys().iter().map(|key| KeyInfo {
        kid: key.kid.clone(),
        partner: key.partner.clone(),
        not_before_ms: key.not_before_ms,
        not_after_ms: key.not_after_ms,
        grace_days: key.grace_days,
        accepted_until_ms: key.accepted_until_ms(),
        status: key.status_at(now_ms),
    });
    Ok(info.collect())
}

/// Adds a key for `partner` (expiring after the policy's `rotation_days`, if any) and
/// starts the grace period (`grace_days`, else the policy's `grace_period_days`) of every
/// key of that partner accepted at `now_ms`: `not_after = now`, `grace_days = grace_days`,
/// unless the key already stops being accepted by `now + grace_days`. Pending keys are
/// left alone. `grace_days = 0` revokes the old keys at once. The file must exist and the
/// partner must have an accepted key (else `NothingToRotate`).
pub fn rotate_key(path: &Path, partner: &str, grace_days: Option<u32>, now_ms: i64) -> Result<NewKey, KeyRingError> {
    check_partner_argument(partner)?;
    let Some(mut raw) = read_raw(path)? else {
        return Err(KeyRingError::Read { path: path.to_owned(), source: io::ErrorKind::NotFound.into() });
    };
    let ring = build_ring(&raw, path)?;
    let grace_days = grace_days.unwrap_or(ring.policy().grace_period_days);
    if grace_days > GRACE_DAYS_MAX {
        return Err(KeyRingError::Argument { name: "grace_days", reason: format!("must be at most {GRACE_DAYS_MAX}") });
    }
    let now_ms = whole_second(now_ms);
    let grace_end_ms = now_ms + grace_ms(grace_days);
    let mut rotated = 0usize;
    for (raw_key, key) in raw.keys.iter_mut().zip(ring.keys()) {
        if key.partner != partner || !key.accepts_at(now_ms) {
            continue;
        }
        rotated += 1;
        if key.accepted_until_ms().is_some_and(|until| until <= grace_end_ms) {
            continue;
        }
        raw_key.not_after = Some(toml::Value::String(time_text(now_ms)));
        raw_key.grace_days = grace_days;
    }
    if rotated == 0 {
        return Err(KeyRingError::NothingToRotate { path: path.to_owned(), partner: partner.to_owned() });
    }
    let kid = unused_kid(&ring, now_ms)?;
    raw.keys.push(policy_key(kid.clone(), partner, ring.policy(), now_ms));
    store(path, &raw)?;
    Ok(NewKey { kid, partner: partner.to_owned(), path: path.to_owned(), grace_days })
}

/// A consumer token just added to a ring file: the token text is printed once and
/// only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub partner: String,
    pub path: PathBuf,
    pub token: String,
}

/// Adds a consumer token for `partner` (SPEC §6) named `name` (default: `t` + date +
/// random hex), valid for `valid_days` (default: no expiry), creating the file if it is
/// missing. The token is `sltk_` + 43 characters of URL-safe base64 (32 random bytes).
pub fn gen_token(path: &Path, partner: &str, name: Option<&str>, valid_days: Option<u32>, now_ms: i64) -> Result<NewToken, KeyRingError> {
    check_partner_argument(partner)?;
    if let Some(days) = valid_days
        && !(1..=KEY_VALID_DAYS_MAX).contains(&days)
    {
        return Err(KeyRingError::Argument { name: "valid_days", reason: format!("must be 1..={KEY_VALID_DAYS_MAX}") });
    }
    let mut raw = read_raw(path)?.unwrap_or_default();
    build_ring(&raw, path)?;
    let now_ms = whole_second(now_ms);
    let name = match name {
        Some(name) if !is_valid_kid(name.as_bytes()) => {
            return Err(KeyRingError::Argument {
                name: "name",
                reason: format!("must be 1..={KID_BYTES_MAX} characters of [A-Za-z0-9_.:-]"),
            });
        }
        Some(name) if raw.tokens.iter().any(|token| token.name == name) => {
            return Err(KeyRingError::Argument { name: "name", reason: format!("{name:?} names a token already") });
        }
        Some(name) => name.to_owned(),
        None => {
            let mut generated = generate_kid(now_ms);
            generated.replace_range(0..1, "t");
            generated
        }
    };
    let mut bytes = random_bytes::<32>();
    let token = format!("sltk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    wipe(&mut bytes);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut hex = [0u8; 64];
    crate::perimeter::hmac::hex_into(digest.as_ref(), &mut hex);
    let sha256 = hex.iter().map(|b| char::from(*b)).collect();
    let not_after = valid_days.map(|days| toml::Value::String(time_text(now_ms + i64::from(days) * DAY_MS)));
    raw.tokens.push(RawToken { name: name.clone(), partner: partner.to_owned(), sha256, not_after });
    store(path, &raw)?;
    Ok(NewToken { name, partner: partner.to_owned(), path: path.to_owned(), token })
}

/// Creates a ring with one non-expiring key for partner `dev` if nothing exists at `path`
/// (parent directories included). `Some(key)` when created; `None` when a file was
/// already there (it is not read). Never replaces an existing file, even under a race.
pub fn ensure_dev_keyring(path: &Path, now_ms: i64) -> Result<Option<NewKey>, KeyRingError> {
    let write_error = |source| KeyRingError::Write { path: path.to_owned(), source };
    if fs::symlink_metadata(path).is_ok() {
        return Ok(None);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(write_error)?;
    }
    let kid = generate_kid(whole_second(now_ms));
    // The development partner may also read every topic, so a newcomer's
    // `sluice keys token --partner dev` reads what it sent.
    let partner =
        partners::RawPartner { name: DEV_PARTNER.to_owned(), consume_topics: vec!["*".to_owned()], ..partners::RawPartner::default() };
    let raw = RawRing { partners: vec![partner], keys: vec![new_raw_key(kid.clone(), DEV_PARTNER, None, 0)], ..RawRing::default() };
    let text = render(&raw, path)?;
    if !write_file(path, text.as_bytes(), Publish::NoClobber).map_err(write_error)? {
        return Ok(None);
    }
    Ok(Some(NewKey { kid, partner: DEV_PARTNER.to_owned(), path: path.to_owned(), grace_days: 0 }))
}

pub(super) fn check_partner_argument(partner: &str) -> Result<(), KeyRingError> {
    match partner_problem(partner) {
        Some(reason) => Err(KeyRingError::Argument { name: "partner", reason }),
        None => Ok(()),
    }
}

pub(super) fn whole_second(unix_ms: i64) -> i64 {
    unix_ms - unix_ms.rem_euclid(1000)
}

pub(super) fn new_raw_key(kid: String, partner: &str, not_after: Option<toml::Value>, grace_days: u32) -> RawKey {
    RawKey { kid, secret: generate_secret(), partner: partner.to_owned(), not_before: None, not_after, grace_days }
}

/// A new key under the ring's policy: with `rotation_days`, it expires that many days
/// from now and then has `grace_period_days` of grace; without, it never expires.
pub(super) fn policy_key(kid: String, partner: &str, policy: &Policy, now_ms: i64) -> RawKey {
    match policy.rotation_days {
        Some(days) => {
            let not_after = toml::Value::String(time_text(now_ms + i64::from(days) * DAY_MS));
            new_raw_key(kid, partner, Some(not_after), policy.grace_period_days)
        }
        None => new_raw_key(kid, partner, None, 0),
    }
}

pub(super) fn unused_kid(ring: &KeyRing, now_ms: i64) -> Result<String, KeyRingError> {
    for _ in 0..KID_GENERATE_ATTEMPTS_MAX {
        let kid = generate_kid(now_ms);
        if ring.get(kid.as_bytes()).is_none() {
            return Ok(kid);
        }
    }
    Err(KeyRingError::KidExhausted { path: ring.path.clone(), attempts: KID_GENERATE_ATTEMPTS_MAX })
}

/// The parsed file, or `None` if it does not exist.
pub(super) fn read_raw(path: &Path) -> Result<Option<RawRing>, KeyRingError> {
    match fs::read_to_string(path) {
        Ok(text) => parse_raw(&text, path).map(Some),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyRingError::Read { path: path.to_owned(), source }),
    }
}

/// Validates `raw` once more, then replaces the file.
pub(super) fn store(path: &Path, raw: &RawRing) -> Result<(), KeyRingError> {
    build_ring(raw, path)?;
    let text = render(raw, path)?;
    write_file(path, text.as_bytes(), Publish::Replace).map(|_| ()).map_err(|source| KeyRingError::Write { path: path.to_owned(), source })
}

pub(super) fn render(raw: &RawRing, path: &Path) -> Result<String, KeyRingError> {
    let body = toml::to_string(raw)
        .map_err(|error| KeyRingError::Write { path: path.to_owned(), source: io::Error::other(redact_quoted(&error.to_string())) })?;
    // A blank line between keys; `[[keys]]` cannot occur inside a value: newlines in
    // strings are escaped.
    Ok(format!(
        "{FILE_HEADER}{}",
        body.replace("\n[[keys]]", "\n\n[[keys]]").replace("\n[[partners]]", "\n\n[[partners]]").replace("\n[[tokens]]", "\n\n[[tokens]]")
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Publish {
    /// rename(2) over whatever is there.
    Replace,
    /// link(2), which fails if the name exists.
    NoClobber,
}

/// Writes `contents` to a mode 0600 temporary file in `path`'s directory, fsyncs it,
/// publishes it under `path` and fsyncs the directory. Returns false only for
/// `NoClobber` when `path` already exists. The temporary file never outlives the call.
/// A file that is replaced passes on its owner, group and permission bits (less any for
/// others and any execute bit): `keys rotate` run as root must leave a root:sluice 0640
/// ring readable by the service.
pub(super) fn write_file(path: &Path, contents: &[u8], publish: Publish) -> io::Result<bool> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the key ring path names no file"));
    };
    let [a, b, c] = random_bytes::<3>();
    let temporary = directory.join(format!(".{}.{}.{a:02x}{b:02x}{c:02x}.tmp", name.to_string_lossy(), std::process::id()));
    let existing = if publish == Publish::Replace { fs::metadata(path).ok() } else { None };
    let result = write_and_publish(&temporary, path, contents, publish, existing.as_ref());
    if !matches!(result, Ok(true) if publish == Publish::Replace) {
        // Replace moved it away on success; in every other case it is still there.
        let _ = fs::remove_file(&temporary);
    }
    let published = result?;
    File::open(directory)?.sync_all()?;
    Ok(published)
}

pub(super) fn write_and_publish(
    temporary: &Path,
    path: &Path,
    contents: &[u8],
    publish: Publish,
    like: Option<&fs::Metadata>,
) -> io::Result<bool> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(temporary)?;
    let mode = match like {
        Some(existing) => {
            use std::os::unix::fs::MetadataExt;
            let ours = file.metadata()?;
            if (ours.uid(), ours.gid()) != (existing.uid(), existing.gid()) {
                std::os::unix::fs::fchown(&file, Some(existing.uid()), Some(existing.gid())).map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!(
                            "cannot give the new key ring the owner {}:{} of the file it replaces: {error}",
                            existing.uid(),
                            existing.gid()
                        ),
                    )
                })?;
            }
            (existing.mode() & REPLACED_MODE_MASK) | FILE_MODE
        }
        None => FILE_MODE,
    };
    // The umask may have removed bits from the mode; make it exact.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    match publish {
        Publish::Replace => fs::rename(temporary, path).map(|()| true),
        Publish::NoClobber => match fs::hard_link(temporary, path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(error),
        },
    }
}
