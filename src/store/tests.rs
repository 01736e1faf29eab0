//! The container format's tests: round trips, layout, and every truncation and flipped
//! byte refused.

use super::*;

fn sample() -> Vec<u8> {
    let mut w = ContainerWriter::new("flat", "Flat", 2, Metric::L2, 3);
    w.params(&(7u32, "x".to_string())).unwrap();
    w.section_f32("vectors", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    w.section_u64("ids", &[10, 11, 12]);
    w.to_bytes().unwrap()
}

#[test]
fn round_trip_and_alignment() {
    let c = Container::from_bytes("t", sample(), OpenOptions::default()).unwrap();
    assert_eq!(c.header().kind, "flat");
    assert_eq!(c.section_f32("vectors", 6).unwrap()[5], 6.0);
    assert_eq!(c.section_u64("ids", 3).unwrap(), vec![10, 11, 12]);
    assert_eq!(c.params::<(u32, String)>().unwrap(), (7, "x".into()));
    assert!(c.header().sections.iter().all(|s| s.offset % 64 == 0));
    assert!(c.section_f32("vectors", 5).is_err());
    assert!(c.section("nope").is_err());
}

#[test]
fn every_truncation_is_an_error() {
    let b = sample();
    for len in 0..b.len() {
        let r = Container::from_bytes("t", b[..len].to_vec(), OpenOptions::default());
        // Trailing alignment padding after the last section may be cut without loss.
        let last_end = {
            let c = Container::from_bytes("t", b.clone(), OpenOptions::default()).unwrap();
            c.header()
                .sections
                .iter()
                .map(|s| s.offset + s.length)
                .max()
                .unwrap() as usize
        };
        if len < last_end {
            assert!(r.is_err(), "truncated to {len} accepted");
        }
    }
}

#[test]
fn every_flipped_byte_is_caught() {
    // Every byte: preamble, header, padding after it, sections, padding between and
    // after them.
    let b = sample();
    for i in 0..b.len() {
        for mask in [0x01, 0x5A, 0xFF] {
            let mut m = b.clone();
            m[i] ^= mask;
            assert!(
                Container::from_bytes("t", m, OpenOptions::default()).is_err(),
                "flip {mask:#04x} at {i} of {} accepted",
                b.len()
            );
        }
    }
}

#[test]
fn streamed_save_equals_to_bytes() {
    let v = [1.0f32, -2.5, 3.25];
    let mut w = ContainerWriter::new("flat", "Flat", 3, Metric::L2, 1);
    w.section_f32("vectors", &v)
        .section_u32("u32s", &[1, 2, 3])
        .section("raw", vec![9u8; 70])
        .section("borrowed", &b"abc"[..]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.vq");
    w.save(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), w.to_bytes().unwrap());
    assert!(!dir.path().join("x.vq.tmp").exists());
    let c = Container::open(&path).unwrap();
    assert_eq!(c.section_f32("vectors", 3).unwrap(), v);
    assert_eq!(&*c.slab::<u32>("u32s", 3).unwrap(), &[1, 2, 3]);
    assert_eq!(c.section("borrowed").unwrap(), b"abc");
}

// Issue 16: a directory opened as a container says so (mapping one fails with
// "No such device").
#[test]
fn item16_directory_is_not_a_container() {
    let dir = tempfile::tempdir().unwrap();
    let e = Container::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("is a directory") && !e.contains("No such device"),
        "{e}"
    );
}

#[test]
fn trailing_bytes_and_moved_sections_are_refused() {
    let mut b = sample();
    b.extend_from_slice(&[0; 64]);
    let e = Container::from_bytes("t", b, OpenOptions::default()).unwrap_err();
    assert!(e.to_string().contains("after the last section"), "{e}");
    // A section table moved by 64 bytes (header checksum fixed): not where the writer
    // puts it.
    let c = Container::from_bytes("t", sample(), OpenOptions::default()).unwrap();
    let mut h = c.header().clone();
    let last = h.sections.len() - 1;
    h.sections[last].offset += 64;
    let hb = postcard::to_stdvec(&h).unwrap();
    let mut f = sample();
    let hlen = u64::from_le_bytes(f[12..20].try_into().unwrap()) as usize;
    assert_eq!(hb.len(), hlen);
    f[24..24 + hlen].copy_from_slice(&hb);
    f[20..24].copy_from_slice(&crc32fast::hash(&hb).to_le_bytes());
    f.extend_from_slice(&[0; 64]);
    let e = Container::from_bytes("t", f, OpenOptions::default()).unwrap_err();
    assert!(e.to_string().contains("not where it belongs"), "{e}");
}

#[test]
fn newer_version_is_refused() {
    let mut b = sample();
    b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let e = Container::from_bytes("t", b, OpenOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("newer"), "{e}");
}
