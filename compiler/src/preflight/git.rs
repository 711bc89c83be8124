//! The Flux repository answers to the deploy key: `git ls-remote` of
//! `flux.url`'s `flux.branch` over SSH with only the key `flux.deploy_key`
//! names and only the host keys of `flux.known_hosts` (`net::git_remote`),
//! as Flux's source-controller will connect. Fetches no object.

use super::{Options, Secrets, Subject};
use crate::checks::Check;
use crate::net::git_remote::{ls_remote, GitRemoteError};

const LAYER: &str = "git";

pub fn check(subject: &Subject<'_>, options: &Options, values: &mut Secrets<'_>) -> Vec<Check> {
    let (Some(flux), Some(written)) = (&subject.model.flux, &subject.document.flux) else {
        return Vec::new();
    };
    let name = format!("{} with the deploy key", flux.url);
    let key =
        match values.get("flux.deploy_key", &flux.deploy_key) {
            Ok(key) => key,
            Err(why) => {
                return vec![Check::unreachable(
                LAYER,
                name,
                format!("not asked: the deploy key {} could not be read ({why})", flux.deploy_key),
                "make flux.deploy_key readable (see the secrets check), then run preflight again",
            )
            .from_line(subject.line(&written.deploy_key.span))]
            }
        };
    let known_hosts: Vec<&str> = flux.known_hosts.iter().map(|h| &**h).collect();
    vec![
        match ls_remote(&flux.url, &flux.branch, &key, &known_hosts, options.timeout) {
            Ok(Some(commit)) => Check::pass(
                LAYER,
                name,
                format!("branch {} is at {}", flux.branch, short(&commit)),
            )
            .from_line(subject.line(&written.url.span)),
            Ok(None) => Check::pass(
                LAYER,
                name,
                format!(
                    "readable; branch {} does not exist yet (`waddlec platform publish --push` makes it)",
                    flux.branch
                ),
            )
            .from_line(subject.line(&written.url.span)),
            Err(GitRemoteError::Refused(said)) => Check::failed(
                LAYER,
                name,
                format!("the server refused: {said}"),
                "add the deploy key's public half to the repository (read access), and check that flux.known_hosts holds the server's host key (`ssh-keyscan HOST`)",
            )
            .from_line(subject.line(&written.deploy_key.span)),
            Err(GitRemoteError::Unreachable(said)) => Check::unreachable(
                LAYER,
                name,
                format!("the server did not answer: {said}"),
                "check flux.url and your network, or raise --timeout",
            )
            .from_line(subject.line(&written.url.span)),
            Err(err @ GitRemoteError::NoGit(_)) => Check::unreachable(
                LAYER,
                name,
                err.to_string(),
                "install git and OpenSSH's ssh client",
            ),
        },
    ]
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
