//! Reading a new password for `switchboard passwd FILE add USER` and `switchboard
//! passwd-scram FILE add USER`.
//!
//! On a terminal the password is typed without echo ([`rpassword`] switches the terminal's echo
//! off and restores it, Ctrl-C included) and asked twice, so a typo is not stored. Otherwise
//! (scripts, tests) one line is read from standard input, its line ending removed.

use std::io::{BufRead, IsTerminal as _};

/// The new password of `user`: typed twice without echo when standard input is a terminal,
/// else the first line of standard input.
///
/// # Errors
/// Reading fails, or the two entries differ.
pub fn new_password(user: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {user}: "))?;
        let again = rpassword::prompt_password(format!("Password for {user} again: "))?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing changed");
        }
        Ok(first)
    } else {
        eprintln!("password for {user} (one line on standard input):");
        read_line(&mut stdin.lock())
    }
}

/// One line from `input`, without its line ending (`\n` or `\r\n`).
fn read_line(input: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_line() {
        let mut input = std::io::Cursor::new("s3cret pw\r\nnext\n");
        assert_eq!(read_line(&mut input).unwrap(), "s3cret pw");
        assert_eq!(read_line(&mut input).unwrap(), "next");
        assert_eq!(read_line(&mut input).unwrap(), "");
    }
}
