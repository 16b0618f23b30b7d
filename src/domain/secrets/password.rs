//! Generated passwords for the v1 dialect's `/generate`: uniform over a look-alike-free alphabet,
//! with every character class present.

use super::*;

/// Characters of generated values: look-alikes (`i l o 1 I O 0`) removed.
pub(super) const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
pub(super) const LOWER: &[u8] = b"abcdefghjkmnpqrstuvwxyz";
pub(super) const DIGITS: &[u8] = b"23456789";
pub(super) const SYMBOLS: &[u8] = b"!#$%&*+-=?@^_";

/// A uniformly random index below `n` (n ≤ 256), by rejection sampling so no character is favoured.
pub(super) fn random_index(n: usize) -> usize {
    let limit = 256 - (256 % n);
    loop {
        let [b] = random_bytes::<1>();
        if usize::from(b) < limit {
            return usize::from(b) % n;
        }
    }
}

/// A password of `length` characters with at least one upper, lower, digit and symbol.
pub fn generate_password(length: usize) -> String {
    let classes = [UPPER, LOWER, DIGITS, SYMBOLS];
    let alphabet: Vec<u8> = classes.concat();
    loop {
        let value: Vec<u8> = (0..length).map(|_| alphabet[random_index(alphabet.len())]).collect();
        // Redrawing until every class appears keeps the draw uniform over acceptable passwords; with
        // six or more characters a redraw is needed about a third of the time at worst.
        if classes.iter().all(|class| value.iter().any(|c| class.contains(c))) {
            return String::from_utf8(value).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_have_every_class_and_no_lookalikes() {
        for length in [6, 12, 128] {
            let p = generate_password(length);
            assert_eq!(p.len(), length);
            assert!(p.bytes().any(|c| UPPER.contains(&c)));
            assert!(p.bytes().any(|c| LOWER.contains(&c)));
            assert!(p.bytes().any(|c| DIGITS.contains(&c)));
            assert!(p.bytes().any(|c| SYMBOLS.contains(&c)));
            assert!(!p.contains(['i', 'l', 'o', '1', 'I', 'O', '0']), "{p}");
        }
    }
}
