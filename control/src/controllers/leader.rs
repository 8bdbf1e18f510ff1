//! Leader election among `strait-control` processes sharing one store (etcd), as
//! kube-controller-manager does it: a `coordination.k8s.io` Lease, `kube-system/
//! strait-controller-manager`, held by one process at a time and renewed every two seconds;
//! the others run the API but not the controllers, and take the Lease over once it has not
//! been renewed for its duration. Two sets of controllers acting on the same objects would
//! each create the pods the other had created.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

/// The Lease's namespace and name.
pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "strait-controller-manager";
/// How long a Lease not renewed stays its holder's (kube-controller-manager's default).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews it, and a candidate looks again.
pub const RETRY: Duration = Duration::from_secs(2);
/// A holder that could not renew for this long stops acting: by then another process may
/// have taken over (kube-controller-manager's renew deadline).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// What a candidate does with the Lease it sees. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Take,
    /// It is ours: renew it.
    Renew,
    /// Another process holds it.
    Wait,
}

/// Decides for `me` at `now` given the Lease's spec.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Take;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Take,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            let duration = i64::from(
                spec.lease_duration_seconds
                    .unwrap_or(LEASE_DURATION.as_secs() as i32),
            );
            match renewed {
                Some(at) if at + SignedDuration::from_secs(duration) > now => Decision::Wait,
                _ => Decision::Take,
            }
        }
    }
}

/// Returns once `me` holds the Lease.
pub async fn acquire(client: &Client, me: &str) {
    loop {
        match try_hold(client, me).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(%error, "leader election: the Lease could not be read or written")
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Renews the Lease while `me` holds it; returns when it was lost or could not be renewed
/// within the renew deadline.
pub async fn hold(client: &Client, me: &str) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RETRY).await;
        match try_hold(client, me).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, "leader election: renewing the Lease failed");
                if renewed.elapsed() > RENEW_DEADLINE {
                    return;
                }
            }
        }
    }
}

/// One round: take or renew the Lease if `decide` says so. `Ok(true)` if `me` holds it now.
async fn try_hold(client: &Client, me: &str) -> kube::Result<bool> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let now = Timestamp::now();
    let current = leases.get_opt(NAME).await?;
    let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), me, now);
    if decision == Decision::Wait {
        return Ok(false);
    }
    let previous = current
        .as_ref()
        .and_then(|l| l.spec.clone())
        .unwrap_or_default();
    let spec = LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: match decision {
            Decision::Renew => previous.acquire_time.clone(),
            _ => Some(MicroTime(now)),
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(
            previous.lease_transitions.unwrap_or(0)
                + i32::from(decision == Decision::Take && current.is_some()),
        ),
        ..LeaseSpec::default()
    };
    let result = match current {
        // The resourceVersion makes the write conditional: of two candidates, one wins.
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases.replace(NAME, &PostParams::default(), &lease).await
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(NAME.to_owned()),
                    namespace: Some(NAMESPACE.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        // Another candidate wrote first.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_free_or_expired_lease_is_taken_and_a_live_one_waited_for() {
        let now: Timestamp = "2026-11-28T10:00:00Z".parse().expect("a time");
        let ago = |s: i64| now - SignedDuration::from_secs(s);
        assert_eq!(decide(None, "a", now), Decision::Take);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", now),
            Decision::Take
        );
        assert_eq!(
            decide(Some(&held_by("a", ago(1))), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&held_by("b", ago(14))), "a", now),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&held_by("b", ago(15))), "a", now),
            Decision::Take
        );
        assert_eq!(
            decide(Some(&held_by("b", ago(60))), "a", now),
            Decision::Take
        );
        // Our own lease is renewed even when it lapsed: nobody else took it.
        assert_eq!(
            decide(Some(&held_by("a", ago(60))), "a", now),
            Decision::Renew
        );
    }
}
