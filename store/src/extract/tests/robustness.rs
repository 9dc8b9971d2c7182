//! Broken, hostile or random input: errors that name the entry, never a panic or an escape.

use std::fs;

use proptest::prelude::*;

use super::*;

#[test]
fn truncated_and_garbage_input_are_errors() {
    let fx = fixture();
    let tar = tar_of([file("a", vec![7u8; 10_000]), file("b", "second")]);
    // Inside a's data.
    let err = fx.unpack_checked(&tar[..512 + 5000]).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::Truncated {
                index: 1,
                expected: 10_000,
                got: 5000,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("layer tar is truncated or corrupted at entry 1"),
        "{err}"
    );
    fs::remove_dir_all(&fx.dest).unwrap();
    fs::create_dir(&fx.dest).unwrap();
    // Inside b's header.
    let err = fx.unpack_checked(&tar[..512 + 10_240 + 100]).unwrap_err();
    assert!(
        matches!(err, ExtractError::Corrupt { index: 2, .. }),
        "{err}"
    );
    fs::remove_dir_all(&fx.dest).unwrap();
    fs::create_dir(&fx.dest).unwrap();
    // Inside the padding after a's data: the next header is missing mid-skip.
    let err = fx.unpack_checked(&tar[..512 + 10_100]).unwrap_err();
    assert!(
        matches!(err, ExtractError::Corrupt { index: 2, .. }),
        "{err}"
    );
    fs::remove_dir_all(&fx.dest).unwrap();
    fs::create_dir(&fx.dest).unwrap();
    // Not a tar at all.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 13) as u8).collect();
    let err = fx.unpack_checked(&garbage).unwrap_err();
    assert!(
        matches!(err, ExtractError::Corrupt { index: 1, .. }),
        "{err}"
    );
    // A header whose checksum is wrong.
    let mut bad = tar.clone();
    bad[0] ^= 1;
    assert!(matches!(
        fx.unpack_checked(&bad),
        Err(ExtractError::Corrupt { .. })
    ));
    // An empty stream is an empty layer.
    assert_eq!(fx.unpack_checked(&[]).unwrap(), UnpackStats::default());
}

#[test]
fn unsupported_and_invalid_entries_name_themselves() {
    let fx = fixture();
    let err = fx
        .unpack_checked(&tar_of([e("vol", EntryType::new(b'V'))]))
        .unwrap_err();
    assert!(
        matches!(err, ExtractError::UnsupportedType { flag: 'V', .. }),
        "{err}"
    );
    assert!(err.to_string().contains("vol"), "{err}");
    let err = fx.unpack_checked(&tar_of([file("./", "")])).unwrap_err();
    assert!(matches!(err, ExtractError::InvalidPath { .. }), "{err}");
    let err = fx.unpack_checked(&tar_of([symlink("s", "")])).unwrap_err();
    assert!(matches!(err, ExtractError::InvalidPath { .. }), "{err}");
    let err = fx
        .unpack_checked(&tar_of([E {
            pax: vec![("path".into(), b"a\0b".to_vec())],
            ..file("x", "")
        }]))
        .unwrap_err();
    assert!(matches!(err, ExtractError::InvalidPath { .. }), "{err}");
    let err = fx
        .unpack_checked(&tar_of([E {
            pax: vec![("mtime".into(), b"soon".to_vec())],
            ..file("x", "")
        }]))
        .unwrap_err();
    assert!(
        matches!(err, ExtractError::Header { field: "mtime", .. }),
        "{err}"
    );
}

/// Names built from components that matter to path handling.
fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    let comp = prop::sample::select(vec![
        "..",
        ".",
        "",
        "a",
        "b",
        "l",
        "/",
        ".wh.a",
        ".wh.l",
        ".wh..wh..opq",
        ".wh..wh.plnk",
        "tmp",
    ]);
    prop::collection::vec(comp, 1..6).prop_map(|c| c.join("/").into_bytes())
}

/// Placeholder for the sentinel's absolute path, filled in per test case.
const OUTSIDE: &[u8] = b"@OUTSIDE@";

fn arb_entry() -> impl Strategy<Value = E> {
    let target = prop_oneof![
        arb_name(),
        Just(OUTSIDE.to_vec()),
        Just(b"/".to_vec()),
        Just(b"/tmp".to_vec()),
        Just(b"../../..".to_vec()),
    ];
    (
        arb_name(),
        0..7u8,
        target,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(name, kind, target, data)| match kind {
            0 | 1 => file(name, data),
            2 => dir(name),
            3 | 4 => symlink(name, target),
            5 => hardlink(name, target),
            _ => E {
                dev: (1, 3),
                ..e(name, EntryType::Char)
            },
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_or_escape(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let fx = fixture();
        let before = snapshot(&fx.sentinel);
        let _ = unpack_layer(bytes.as_slice(), &fx.dest);
        // A valid header followed by random bytes.
        let mut tar = tar_of([file("x", "y")]);
        tar.extend_from_slice(&bytes);
        let _ = unpack_layer(tar.as_slice(), &fx.dest);
        fx.assert_outside_untouched(&before);
    }

    #[test]
    fn random_entries_never_panic_or_escape(entries in prop::collection::vec(arb_entry(), 1..12)) {
        let fx = fixture();
        let outside = fx.sentinel.to_str().unwrap().as_bytes().to_vec();
        let entries = entries.into_iter().map(|mut e| {
            if e.link == OUTSIDE {
                e.link = outside.clone();
            }
            e
        });
        // Both resolvers, same outcome, nothing outside changed (checked inside).
        let _ = fx.unpack_checked(&tar_of(entries));
    }
}
