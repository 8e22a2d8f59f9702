use proptest::prelude::*;

use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn a_lookaside_path_as_containers_image_asks_for_it_is_accepted() {
    let p = SignaturePath::parse(&format!(
        "checkpoints/default/counter-7d9f5-counter@sha256={HEX}/signature-2"
    ))
    .unwrap();
    assert_eq!(p.repo, "checkpoints/default/counter-7d9f5-counter");
    assert_eq!(p.hex, HEX);
    assert_eq!(p.index, 2);
    assert_eq!(
        p.key(),
        format!("sigstore/checkpoints/default/counter-7d9f5-counter@sha256={HEX}/signature-2")
    );
    assert_eq!(
        SignaturePath::of("a/b", &format!("sha256:{HEX}"), 1)
            .unwrap()
            .relative(),
        format!("a/b@sha256={HEX}/signature-1")
    );
}

#[test]
fn every_other_path_shape_is_refused_with_its_reason() {
    let long_repo = format!("{}/x", "a".repeat(400));
    let cases: Vec<(String, PathError)> = vec![
        (
            format!("../etc@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a/../b@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a/./b@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("/etc/passwd@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a//b@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a/b/@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("A/B@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a%2fb@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a b@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a..b@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a___b@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("a-@sha256={HEX}/signature-1"),
            PathError::Repository,
        ),
        (
            format!("{long_repo}@sha256={HEX}/signature-1"),
            PathError::TooLong,
        ),
        (
            format!("{}@sha256={HEX}/signature-1", "a".repeat(256)),
            PathError::Repository,
        ),
        (format!("a@sha512={HEX}/signature-1"), PathError::Digest),
        (
            format!("a@sha256={}/signature-1", HEX.to_uppercase()),
            PathError::Digest,
        ),
        (
            format!("a@sha256={}/signature-1", &HEX[1..]),
            PathError::Digest,
        ),
        (format!("a@sha256={HEX}0/signature-1"), PathError::Digest),
        (
            "a@sha256=../../../../etc/passwd/signature-1".into(),
            PathError::Digest,
        ),
        (format!("a@sha256={HEX}/signature-0"), PathError::Index),
        (format!("a@sha256={HEX}/signature-01"), PathError::Index),
        (format!("a@sha256={HEX}/signature-1000"), PathError::Index),
        (format!("a@sha256={HEX}/signature-"), PathError::Index),
        (format!("a@sha256={HEX}/signature-1/x"), PathError::Index),
        (format!("a@sha256={HEX}/signature-+1"), PathError::Index),
        (format!("a@sha256={HEX}/instances.json"), PathError::Shape),
        (
            format!("a@sha256={HEX}/../../x/signature-1"),
            PathError::Shape,
        ),
        (format!("a@sha256={HEX}"), PathError::Shape),
        ("a".into(), PathError::Shape),
        (String::new(), PathError::Shape),
    ];
    for (path, expected) in cases {
        assert_eq!(SignaturePath::parse(&path), Err(expected), "{path:?}");
    }
}

fn re(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).unwrap()
}

proptest! {
    /// Whatever the request path, an accepted one maps to a key under `sigstore/` that has no
    /// `.` or `..` component, no empty one, and reads back as the same path.
    #[test]
    fn any_accepted_path_names_one_key_inside_the_prefix(path in re("[a-z0-9./_@=-]{0,120}(sha256=[0-9a-f]{64}/signature-[0-9]{1,4})?")) {
        if let Ok(p) = SignaturePath::parse(&path) {
            let key = p.key();
            prop_assert!(key.starts_with("sigstore/"));
            prop_assert!(key.split('/').all(|c| !c.is_empty() && c != "." && c != ".."), "{key}");
            prop_assert_eq!(p.relative(), path);
        }
    }

    /// Paths of valid parts always parse, and any byte outside the grammar added to the
    /// repository is refused.
    #[test]
    fn valid_parts_parse_and_a_stray_byte_is_refused(
        repo in re("[a-z0-9]{1,8}(([._]|__|-+)[a-z0-9]{1,8}){0,3}(/[a-z0-9]{1,8}){0,3}"),
        hex in re("[0-9a-f]{64}"),
        index in 1u32..=MAX_INDEX,
        stray in prop::sample::select(vec!["/", "..", "A", " ", "%", "\\", "\0", "?", "#", "~"]),
    ) {
        let good = format!("{repo}@sha256={hex}/signature-{index}");
        prop_assert!(SignaturePath::parse(&good).is_ok(), "{good}");
        let bad = format!("{repo}{stray}@sha256={hex}/signature-{index}");
        prop_assert!(SignaturePath::parse(&bad).is_err(), "{bad}");
    }
}
