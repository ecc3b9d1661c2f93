//! The adapter against GnuPG 2.2's keys and messages
//! (`tests/fixtures/pgp/`, made by its `make.sh`) and, where gpg is on
//! PATH, gpg reading what we write.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};

use super::keys::PartKey;
use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/pgp/", $name))
    };
}

const TEAM_SEC: &[u8] = fixture!("team.sec.asc");
const TEAM_PUB: &[u8] = fixture!("team.pub.asc");
const ALICE_SEC: &[u8] = fixture!("alice.sec.asc");
const ALICE_PUB: &[u8] = fixture!("alice.pub.asc");
const ALICE_CERTIFIED: &[u8] = fixture!("alice-certified.pub.asc");
const REPORTER_PUB: &[u8] = fixture!("reporter.pub.asc");
const OTHER_SEC: &[u8] = fixture!("other.sec.asc");
const EXPIRED_SEC: &[u8] = fixture!("expired.sec.asc");
const EXPIRED_PUB: &[u8] = fixture!("expired.pub.asc");
const TO_TEAM: &[u8] = fixture!("to-team.asc");
const TO_OTHER: &[u8] = fixture!("to-other.asc");
const TRUNCATED: &[u8] = fixture!("truncated.asc");
const ZEROS: &[u8] = fixture!("zeros.gpg");
const TEAM_PASS: &str = include_str!("../../../tests/fixtures/pgp/team.pass");

const CANARY: &str = "canary-7d1f";
const MIB: usize = 1024 * 1024;

/// The team key, unlocked once: its gpg S2K (65M SHA-1 rounds) takes
/// seconds in a debug build.
fn team() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_bytes(TEAM_SEC, Some(TEAM_PASS)).unwrap())
}

fn alice() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_bytes(ALICE_SEC, None).unwrap())
}

fn public(bytes: &[u8]) -> PublicKey {
    PublicKey::from_bytes(bytes).unwrap()
}

/// Errors are one line and never quote the plaintext.
fn assert_clean(err: &dyn std::fmt::Display) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(!text.contains(CANARY), "{text}");
}

#[test]
fn team_key_reads_unlocks_and_describes_itself() {
    let fp = team().fingerprint();
    assert_eq!(fp.len(), 40);
    assert!(fp
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    assert_eq!(fp, public(TEAM_PUB).fingerprint());
    assert_eq!(
        team().user_ids(),
        ["Example security <security@example.org>"]
    );
    assert_eq!(team().public().emails(), ["security@example.org"]);
    assert_eq!(team().expires_at(), None);
    assert_eq!(format!("{:?}", team()), format!("SecretKey({fp})"));
    assert_eq!(format!("{:?}", team().public()), format!("PublicKey({fp})"));
}

#[test]
fn wrong_or_missing_passphrase_is_an_error_saying_so() {
    let err = SecretKey::from_bytes(TEAM_SEC, Some("wrong horse")).unwrap_err();
    assert!(matches!(err, KeyError::WrongPassphrase), "{err}");
    assert_eq!(err.to_string(), "the passphrase does not unlock the key");
    let err = SecretKey::from_bytes(TEAM_SEC, None).unwrap_err();
    assert!(matches!(err, KeyError::PassphraseNeeded), "{err}");
}

#[test]
fn what_is_not_a_key_is_refused() {
    for bytes in [&b""[..], b"hello", TO_TEAM] {
        let err = SecretKey::from_bytes(bytes, None).unwrap_err();
        assert!(matches!(err, KeyError::NotAKey(_)), "{err}");
        assert_clean(&err);
        let err = PublicKey::from_bytes(bytes).unwrap_err();
        assert!(matches!(err, KeyError::NotAKey(_)), "{err}");
    }
    let err = PublicKey::from_bytes(ALICE_SEC).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not an OpenPGP key: a secret key, not a public one"
    );
}

#[test]
fn an_expired_key_is_refused_as_ours_and_as_a_recipient() {
    let expiry = Utc.with_ymd_and_hms(2020, 1, 2, 0, 0, 0).unwrap();
    let err = SecretKey::from_bytes(EXPIRED_SEC, None).unwrap_err();
    assert!(
        matches!(err, KeyError::Expired(at) if at == expiry),
        "{err}"
    );
    assert_eq!(err.to_string(), "expired on 2020-01-02");

    let old = public(EXPIRED_PUB);
    assert_eq!(old.expires_at(), Some(expiry));
    assert!(!old.can_encrypt(Utc::now()));
    assert!(old.can_encrypt(Utc.with_ymd_and_hms(2020, 1, 1, 12, 0, 0).unwrap()));
    assert!(!old.can_encrypt(Utc.with_ymd_and_hms(2019, 12, 31, 0, 0, 0).unwrap()));
    let err = encrypt(b"x", &[&old], None).unwrap_err();
    assert!(matches!(err, EncryptError::NoEncryptionKey(ref fp) if *fp == old.fingerprint()));
}

#[test]
fn a_third_party_certification_is_dropped_not_fatal() {
    let certified = public(ALICE_CERTIFIED);
    let alice = public(ALICE_PUB);
    assert_eq!(certified.fingerprint(), alice.fingerprint());
    assert_eq!(certified.user_ids(), ["Alice <alice@example.org>"]);
    assert!(certified.can_encrypt(Utc::now()));
    // Exported as verified: the team's certification is gone.
    assert_eq!(certified.armored().unwrap(), alice.armored().unwrap());
}

#[test]
fn public_key_armors_back_and_names_its_emails() {
    let rita = public(REPORTER_PUB);
    let armored = rita.armored().unwrap();
    assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let again = public(armored.as_bytes());
    assert_eq!(again.fingerprint(), rita.fingerprint());
    assert_eq!(again.user_ids(), ["Rita Reporter <rita@example.net>"]);
    assert_eq!(again.emails(), ["rita@example.net"]);
    assert!(again.can_encrypt(Utc::now()));
    assert_eq!(again.expires_at(), None);
}

#[test]
fn decrypts_gpg_message_and_checks_the_reporter_signature() {
    let rita = public(REPORTER_PUB);
    let out = decrypt(TO_TEAM, team(), &[&public(ALICE_PUB), &rita], MIB).unwrap();
    assert_eq!(out.data, b"canary-7d1f secret report\n");
    assert_eq!(
        out.signature,
        SignatureCheck::Valid {
            fingerprint: rita.fingerprint()
        }
    );
    assert!(!format!("{out:?}").contains(CANARY));
    // Inline in a mail body: the armor is found after other text.
    let inline = [&b"Hello,\n\n"[..], TO_TEAM, b"\n-- \nRita\n"].concat();
    let out = decrypt(&inline, team(), &[], MIB).unwrap();
    assert_eq!(out.data, b"canary-7d1f secret report\n");

    let issuer = Some(rita.fingerprint());
    for verifiers in [&[][..], &[&public(ALICE_PUB)]] {
        let out = decrypt(TO_TEAM, team(), verifiers, MIB).unwrap();
        let unknown = SignatureCheck::UnknownKey {
            issuer: issuer.clone(),
        };
        assert_eq!(out.signature, unknown);
    }
}

#[test]
fn a_message_to_another_key_is_not_for_us() {
    let err = decrypt(TO_OTHER, team(), &[], MIB).unwrap_err();
    assert!(matches!(err, DecryptError::NotForUs), "{err}");
    let other = SecretKey::from_bytes(OTHER_SEC, None).unwrap();
    let out = decrypt(TO_OTHER, &other, &[], MIB).unwrap();
    assert_eq!(out.data, b"canary-7d1f not for the team\n");
    assert_eq!(out.signature, SignatureCheck::Unsigned);
}

#[test]
fn truncated_or_garbage_is_malformed() {
    let garbage: &[&[u8]] = &[
        TRUNCATED,
        b"",
        b"hello world",
        b"-----BEGIN PGP MESSAGE-----\n\n!!!!\n-----END PGP MESSAGE-----\n",
        &TO_TEAM[..TO_TEAM.len() - 40],
        ALICE_PUB,
    ];
    for bytes in garbage {
        let err = decrypt(bytes, team(), &[], MIB).unwrap_err();
        assert!(matches!(err, DecryptError::Malformed(_)), "{err}");
        assert_clean(&err);
    }
}

#[test]
fn plaintext_over_the_limit_is_too_large() {
    let len = b"canary-7d1f secret report\n".len();
    let err = decrypt(TO_TEAM, team(), &[], 5).unwrap_err();
    assert!(matches!(err, DecryptError::TooLarge(5)), "{err}");
    assert_eq!(err.to_string(), "the plaintext exceeds 5 bytes");
    assert!(decrypt(TO_TEAM, team(), &[], len - 1).is_err());
    assert!(decrypt(TO_TEAM, team(), &[], len).is_ok());
    // 20 MiB of zeros in 26 KiB: reading stops at the limit.
    let err = decrypt(ZEROS, team(), &[], MIB).unwrap_err();
    assert!(matches!(err, DecryptError::TooLarge(MIB)), "{err}");
}

#[test]
fn nested_compression_stops_at_max_nesting() {
    let team_pub = team().public();
    let out = decrypt(&nested(&team_pub, MAX_NESTING), team(), &[], MIB).unwrap();
    assert_eq!(out.data, b"x");
    for depth in [MAX_NESTING + 1, 1000] {
        let err = decrypt(&nested(&team_pub, depth), team(), &[], MIB).unwrap_err();
        assert!(matches!(err, DecryptError::TooDeep), "{depth}: {err}");
    }
}

#[test]
fn signatures_count_as_layers() {
    let alice_valid = SignatureCheck::Valid {
        fingerprint: alice().fingerprint(),
    };
    let out = decrypt(
        &signed_by_alice(MAX_NESTING),
        team(),
        &[&alice().public()],
        MIB,
    )
    .unwrap();
    assert_eq!(
        (out.data.as_slice(), out.signature),
        (&b"y"[..], alice_valid)
    );
    let err = decrypt(&signed_by_alice(MAX_NESTING + 1), team(), &[], MIB).unwrap_err();
    assert!(matches!(err, DecryptError::TooDeep), "{err}");
}

#[test]
fn what_we_encrypt_opens_with_each_recipient_key() {
    let text = b"canary-7d1f to alice\n";
    let armored = encrypt(text, &[&alice().public()], Some(team())).unwrap();
    assert!(armored.starts_with("-----BEGIN PGP MESSAGE-----"));
    let team_valid = SignatureCheck::Valid {
        fingerprint: team().fingerprint(),
    };
    for key in [alice(), team()] {
        let out = decrypt(armored.as_bytes(), key, &[&team().public()], MIB).unwrap();
        assert_eq!(out.data, text);
        assert_eq!(out.signature, team_valid);
    }
    let other = SecretKey::from_bytes(OTHER_SEC, None).unwrap();
    let err = decrypt(armored.as_bytes(), &other, &[], MIB).unwrap_err();
    assert!(matches!(err, DecryptError::NotForUs));

    let unsigned = encrypt(text, &[&alice().public()], None).unwrap();
    let out = decrypt(unsigned.as_bytes(), alice(), &[&team().public()], MIB).unwrap();
    assert_eq!(out.signature, SignatureCheck::Unsigned);
    let err = decrypt(unsigned.as_bytes(), team(), &[], MIB).unwrap_err();
    assert!(matches!(err, DecryptError::NotForUs), "{err}");
    assert!(matches!(
        encrypt(text, &[], None),
        Err(EncryptError::NoRecipients)
    ));
}

#[test]
fn detached_signature_roundtrip_and_a_tampered_byte() {
    let data = b"Content-Type: text/plain\r\n\r\ncanary-7d1f\r\n";
    let sig = sign_detached(data, team()).unwrap();
    assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"));
    let team_pub = team().public();
    let valid = SignatureCheck::Valid {
        fingerprint: team().fingerprint(),
    };
    assert_eq!(verify_detached(data, sig.as_bytes(), &[&team_pub]), valid);

    let mut tampered = data.to_vec();
    tampered[30] ^= 1;
    let check = verify_detached(&tampered, sig.as_bytes(), &[&team_pub]);
    assert!(
        matches!(check, SignatureCheck::Invalid { issuer: Some(_) }),
        "{check:?}"
    );
    let check = verify_detached(data, sig.as_bytes(), &[&public(ALICE_PUB)]);
    assert!(
        matches!(check, SignatureCheck::UnknownKey { issuer: Some(_) }),
        "{check:?}"
    );
    let check = verify_detached(data, b"not a signature", &[&team_pub]);
    assert_eq!(check, SignatureCheck::Invalid { issuer: None });
}

#[test]
fn clearsign_keeps_the_text_readable() {
    let text = "Contact: mailto:security@example.org \nExpires: 2027-01-01T00:00:00Z\n";
    let signed = clearsign(text, team()).unwrap();
    assert!(signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\n"));
    assert!(signed.contains("\nContact: mailto:security@example.org\nExpires: 2027"));
    assert!(signed.contains("-----BEGIN PGP SIGNATURE-----"));
}

#[test]
fn keys_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SecretKey>();
    send_sync::<PublicKey>();
}

#[test]
fn gpg_reads_what_we_encrypt_and_sign() {
    let Some(home) = GpgHome::new() else {
        return;
    };
    home.import(ALICE_SEC);
    home.import(TEAM_PUB);
    let text = b"canary-7d1f for gpg\n";
    let msg = home.write(
        "msg.asc",
        encrypt(text, &[&alice().public()], Some(team())).unwrap(),
    );
    let out = home.gpg(&["--decrypt", path(&msg)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, text);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Good signature"));

    let data = home.write("part.txt", "Content-Type: text/plain\r\n\r\nhello\r\n");
    let sig = sign_detached(&std::fs::read(&data).unwrap(), team()).unwrap();
    let sig = home.write("part.sig", sig);
    let out = home.gpg(&["--verify", path(&sig), path(&data)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gpg_verifies_our_clearsigned_text() {
    let Some(home) = GpgHome::new() else {
        return;
    };
    home.import(TEAM_PUB);
    let text = "Contact: mailto:security@example.org  \r\nPreferred-Languages: en\n- dash\n";
    let signed = home.write("security.txt", clearsign(text, team()).unwrap());
    let out = home.gpg(&["--verify", path(&signed)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("Good signature"),
        "{stderr}"
    );
}

/// A throwaway GnuPG home; its agent is stopped on drop.
struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    /// None, with a notice, when gpg is not on PATH.
    fn new() -> Option<GpgHome> {
        if Command::new("gpg").arg("--version").output().is_err() {
            eprintln!("skipping: gpg is not on PATH");
            return None;
        }
        Some(GpgHome {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn gpg(&self, args: &[&str]) -> Output {
        Command::new("gpg")
            .args(["--batch", "--trust-model", "always", "--homedir"])
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap()
    }

    fn import(&self, key: &[u8]) {
        let file = self.write("import.asc", key);
        let out = self.gpg(&["--import", path(&file)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let file = self.dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        file
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.dir.path())
            .args(["--kill", "all"])
            .output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A message to `to` whose literal data "x" sits in `depth` nested
/// compressed (ZIP) packets. gpg cannot make one, so it is built here from
/// raw packets: deflate "stored" blocks need no compressor.
fn nested(to: &PublicKey, depth: usize) -> Vec<u8> {
    use pgp::crypto::sym::SymmetricKeyAlgorithm;
    use pgp::packet::{PacketTrait, PublicKeyEncryptedSessionKey, SymEncryptedProtectedData};

    // Literal data: binary, no file name, time 0, "x".
    let mut inner = packet(11, b"b\0\0\0\0\0x");
    for _ in 0..depth {
        let mut body = vec![1]; // ZIP (raw deflate)
        for (i, chunk) in inner.chunks(0xffff).enumerate() {
            let last = (i + 1) * 0xffff >= inner.len();
            let len = u16::try_from(chunk.len()).unwrap();
            body.push(u8::from(last));
            body.extend(len.to_le_bytes());
            body.extend((!len).to_le_bytes());
            body.extend(chunk);
        }
        inner = packet(8, &body);
    }
    let mut rng = rand::thread_rng();
    let alg = SymmetricKeyAlgorithm::AES256;
    let session_key = alg.new_session_key(&mut rng);
    let pkesk = PublicKeyEncryptedSessionKey::from_session_key_v3(
        &mut rng,
        &session_key,
        alg,
        &encryption_subkey(to),
    )
    .unwrap();
    let seipd =
        SymEncryptedProtectedData::encrypt_seipdv1(&mut rng, alg, session_key.as_ref(), &inner)
            .unwrap();
    let mut out = Vec::new();
    pkesk.to_writer_with_header(&mut out).unwrap();
    seipd.to_writer_with_header(&mut out).unwrap();
    out
}

/// A new-format packet with a five-octet length.
fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xc0 | tag, 0xff];
    out.extend(u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend(body);
    out
}

/// A binary message to the team with the text "y" signed `times` times
/// by Alice (one one-pass signature each), as rPGP's builder makes it.
fn signed_by_alice(times: usize) -> Vec<u8> {
    use pgp::composed::MessageBuilder;
    use pgp::crypto::sym::SymmetricKeyAlgorithm;
    use pgp::types::Password;

    let mut rng = rand::thread_rng();
    let (key, hash) = alice().signer(Utc::now()).unwrap();
    let mut builder = MessageBuilder::from_bytes("", b"y".to_vec())
        .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    builder
        .encrypt_to_key(&mut rng, &encryption_subkey(&team().public()))
        .unwrap();
    for _ in 0..times {
        builder.sign(key, Password::empty(), hash);
    }
    builder.to_vec(&mut rng).unwrap()
}

/// The key's one encryption subkey.
fn encryption_subkey(key: &PublicKey) -> pgp::packet::PublicSubkey {
    let parts = key.parts();
    let part = parts.iter().find(|p| p.can_encrypt_at(Utc::now())).unwrap();
    match part.key {
        PartKey::Sub(subkey) => subkey.clone(),
        PartKey::Primary(_) => panic!("fixture keys encrypt with a subkey"),
    }
}
