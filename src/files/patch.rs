//! Binary patches between two releases' files (issue 26): zstd with the old file as its reference prefix (the
//! library form of `zstd --patch-from`), the format the JSON feed calls `zstd-ref-prefix`. Made by the CLI at
//! `release publish`, applied by the app kits; the function never links it.

use std::io::Read;

/// A patch could not be made or does not apply.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// A patch from `old` to `new`: zstd with `old` as its reference prefix (the `--patch-from` of zstd's CLI).
pub fn make_patch(old: &[u8], new: &[u8]) -> Result<Vec<u8>, PatchError> {
    let window = window_log(old.len() + new.len());
    let mut encoder = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 19, old)
        .map_err(|e| PatchError(format!("cannot make a patch: {e}")))?;
    let configured = encoder
        .window_log(window)
        .and_then(|()| encoder.long_distance_matching(true))
        .and_then(|()| encoder.include_checksum(true));
    configured.map_err(|e| PatchError(format!("cannot make a patch: {e}")))?;
    std::io::Write::write_all(&mut encoder, new)
        .and_then(|()| encoder.finish())
        .map_err(|e| PatchError(format!("cannot make a patch: {e}")))
}

/// Applies a patch made by `make_patch` to `old`.
pub fn apply_patch(old: &[u8], patch: &[u8]) -> Result<Vec<u8>, PatchError> {
    let failed = |e: std::io::Error| PatchError(format!("the patch does not apply: {e}"));
    let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(patch, old).map_err(failed)?;
    decoder.window_log_max(31).map_err(failed)?;
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).map_err(failed)?;
    Ok(out)
}

/// The window a patch needs: the old and new file together (at least zstd's default, at most 2 GiB).
fn window_log(total: usize) -> u32 {
    let needed = usize::BITS - total.max(1).leading_zeros();
    needed.clamp(20, 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_applied_to_the_old_file_gives_the_new_one() {
        let old: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        let mut new = old.clone();
        new[1000..1010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"a new tail");
        let patch = make_patch(&old, &new).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            patch.len() < new.len() / 100,
            "patch of {} bytes",
            patch.len()
        );
        assert_eq!(
            apply_patch(&old, &patch).unwrap_or_else(|e| panic!("{e}")),
            new
        );
        let mut other = old.clone();
        other[5] ^= 1;
        assert!(apply_patch(&other, &patch).map_or(true, |out| out != new));
    }
}
