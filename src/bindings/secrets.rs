//! `secrets::`: new secret values (API keys, passwords) from the operating system's secure
//! random source, drawn without bias and masked from the moment they exist.

use std::sync::Arc;

use rhai::Map;

use crate::engine::binding::Family;
use crate::engine::context::RunContext;
use crate::secret::Secret;

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

/// Shorter values are too easy to guess to be worth calling secrets.
const MIN_LENGTH: i64 = 8;
const MAX_LENGTH: i64 = 4096;

const ALPHANUMERIC: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The alphabets scripts can name instead of listing characters.
fn named_alphabet(name: &str) -> Option<&'static str> {
    match name {
        "alphanumeric" => Some(ALPHANUMERIC),
        "hex" => Some("0123456789abcdef"),
        "base64url" => Some("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        "digits" => Some("0123456789"),
        _ => None,
    }
}

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("secrets");
    let c = ctx.clone();
    family.function(
        "generate",
        None,
        &["length: i64", "Secret"],
        &[
            "A new random secret of `length` characters (8 to 4096) from letters and digits, drawn from the operating system's secure random source. It is masked everywhere from the start.",
            "",
            "```rhai",
            "let api_key = secrets::generate(40);",
            "```",
        ],
        move |length: i64| generate(&c, length, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "generate",
        None,
        &["length: i64", "options: Map", "Secret"],
        &[
            "`secrets::generate` with options: `alphabet`, either a name (`alphanumeric`, `hex`, `base64url`, `digits`) or the characters to draw from (2 to 256 different ones).",
            "",
            "```rhai",
            "let password = secrets::generate(32, #{alphabet: \"abcdefghijkmnopqrstuvwxyz23456789!#%+\"});",
            "```",
        ],
        move |length: i64, options: Map| generate(&c, length, &options),
    );
    family
}

fn generate(ctx: &RunContext, length: i64, options: &Map) -> Outcome<Secret> {
    let alphabet = alphabet(options).map_err(|m| format!("secrets::generate: {m}"))?;
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return Err(format!(
            "secrets::generate: length {length} is out of range ({MIN_LENGTH} to {MAX_LENGTH})"
        )
        .into());
    }
    let value = sample(&alphabet, length as usize, |buffer| {
        getrandom::fill(buffer).map_err(|err| err.to_string())
    })
    .map_err(|err| format!("secrets::generate: no random numbers from the system ({err})"))?;
    ctx.masker.add(&value);
    Ok(Secret::new(format!("secrets::generate({length})"), value))
}

/// The characters to draw from, each once, in the order given.
fn alphabet(options: &Map) -> Result<Vec<char>, String> {
    let mut text = ALPHANUMERIC.to_owned();
    for (key, value) in options {
        match key.as_str() {
            "alphabet" => {
                let given = value
                    .clone()
                    .into_string()
                    .map_err(|_| "`alphabet` takes a string".to_owned())?;
                text = named_alphabet(&given).map_or(given, str::to_owned);
            }
            other => return Err(format!("unknown option `{other}` (known: alphabet)")),
        }
    }
    let mut chars: Vec<char> = Vec::new();
    for c in text.chars() {
        if !chars.contains(&c) {
            chars.push(c);
        }
    }
    if !(2..=256).contains(&chars.len()) {
        return Err(format!(
            "the alphabet has {} different characters; it needs 2 to 256",
            chars.len()
        ));
    }
    Ok(chars)
}

/// Draws `length` characters, filling random bytes with `fill`. A byte at or above the
/// largest multiple of the alphabet's size is thrown away rather than wrapped around, so
/// every character is exactly as likely as every other.
fn sample<E>(
    alphabet: &[char],
    length: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<String, E> {
    let size = alphabet.len();
    let limit = 256 - (256 % size);
    let mut out = String::with_capacity(length);
    let mut count = 0;
    let mut buffer = [0_u8; 64];
    while count < length {
        fill(&mut buffer)?;
        for &byte in &buffer {
            if usize::from(byte) < limit && count < length {
                out.push(alphabet[usize::from(byte) % size]);
                count += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_past_the_last_full_multiple_are_rejected() {
        // Three characters: 255 is the one byte that would favour 'a', and must be skipped.
        let alphabet = ['a', 'b', 'c'];
        let mut rounds = [[255_u8; 64], [0_u8; 64]];
        rounds[1][0] = 1;
        rounds[1][1] = 254;
        let mut next = rounds.iter();
        let drawn = sample(&alphabet, 3, |buffer| {
            buffer.copy_from_slice(next.next().ok_or(())?);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(drawn, "bca");
    }

    #[test]
    fn a_full_byte_alphabet_rejects_nothing() {
        let alphabet: Vec<char> = (0..256_u32)
            .filter_map(|i| char::from_u32(0x100 + i))
            .collect();
        let drawn = sample(&alphabet, 64, |buffer| {
            buffer.fill(255);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(drawn.chars().count(), 64);
    }

    #[test]
    fn alphabets_by_name_or_by_characters() {
        let mut options = Map::new();
        assert_eq!(alphabet(&options).unwrap().len(), 62);
        options.insert("alphabet".into(), "hex".into());
        assert_eq!(alphabet(&options).unwrap().len(), 16);
        options.insert("alphabet".into(), "aab".into());
        assert_eq!(alphabet(&options).unwrap(), vec!['a', 'b']);
        options.insert("alphabet".into(), "aaa".into());
        assert!(alphabet(&options).unwrap_err().contains("needs 2 to 256"));
        options.insert("size".into(), 3.into());
        assert!(alphabet(&options).is_err());
    }

    #[test]
    fn real_draws_use_every_character_of_a_small_alphabet() {
        let drawn = sample(&['x', 'y'], 200, getrandom::fill).unwrap();
        assert!(drawn.contains('x') && drawn.contains('y'));
        assert!(drawn.chars().all(|c| c == 'x' || c == 'y'));
    }
}
