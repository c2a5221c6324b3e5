//! The validator's real network: Commonware's authenticated p2p (`lookup`: a fixed peer list with
//! known addresses) on a TCP socket, and the four consensus channels registered on it.
//!
//! This module owns the network choices, each a limit worth knowing:
//! - **who may connect**: only the genesis validators, at the addresses given; every connection
//!   is authenticated (SAKE handshake over the validator's ed25519 key) and encrypted
//!   (ChaCha20-Poly1305). A connection that fails the handshake — garbage, a truncated hello, an
//!   unknown key — is closed by the listener before any message reaches the node.
//! - **namespace**: `dainet-p2p-v1/` + the chain id, so validators of another chain cannot
//!   connect even with the same keys.
//! - **message size cap** ([`max_message_size`]): the larger of a maximal block message
//!   ([`dainet_consensus::wire::MAX_WIRE_BYTES`], a 4 MiB block plus its tag) and simplex's largest
//!   vote or certificate for this committee. A peer that sends more is disconnected.
//! - **rate limits** ([`ChannelQuotas`]), per peer and channel: inbound messages above the quota
//!   are delayed (paced), not dropped. Block messages have a small burst, so at most
//!   `peers × burst × 4 MiB` of block bytes wait in memory. The block channel also carries
//!   transaction gossip, at most one batch per peer every
//!   [`ApplicationConfig::gossip_interval`](dainet_consensus::application::ApplicationConfig)
//!   while batches fit a message; its quota leaves room for that.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use commonware_cryptography::{ed25519, ChaCha20Poly1305, Signer as _};
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address, AddressableManager as _};
use commonware_runtime::{Clock, Handle, Metrics, Network as RuntimeNetwork, Quota, Resolver, Spawner};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::ordered::Map;
use dainet_consensus::types::PublicKey;
use dainet_consensus::validator::{Channels, CHANNEL_BLOCKS, CHANNEL_CERTIFICATES, CHANNEL_RESOLVER, CHANNEL_VOTES};
use dainet_consensus::wire::MAX_WIRE_BYTES;
use dainet_ledger::genesis::Genesis;
use rand_core::CryptoRng;

use crate::error::NodeError;

/// Per-peer message quotas of the four channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelQuotas {
    /// Votes per second (a few per view).
    pub votes_per_s: u32,
    /// Certificates per second (a few per view).
    pub certificates_per_s: u32,
    /// Certificate requests and answers per second (catch-up only).
    pub resolver_per_s: u32,
    /// Block-channel messages (blocks, block requests, transaction gossip batches) per second.
    pub blocks_per_s: u32,
    /// Block messages admitted at once before pacing starts.
    pub blocks_burst: u32,
}

impl Default for ChannelQuotas {
    fn default() -> Self {
        ChannelQuotas {
            votes_per_s: 2_000,
            certificates_per_s: 2_000,
            resolver_per_s: 500,
            // A peer gossips at most one batch per `gossip_interval` (10 ms: 100 per second; at
            // `bench ledger`'s 6000 tx/s a batch is ~15 transactions, far below the 4 MiB cap, so
            // batches do not split); blocks (one per view led) and catch-up requests take the rest.
            blocks_per_s: 500,
            blocks_burst: 8,
        }
    }
}

/// The channels of a validator on the authenticated network.
pub type NodeChannels<E> = Channels<lookup::Sender<PublicKey, E>, lookup::Receiver<PublicKey>>;

/// A started network.
pub struct StartedNetwork<E: Clock> {
    /// The four consensus channels.
    pub channels: NodeChannels<E>,
    /// Blocks misbehaving peers (consensus holds it).
    pub oracle: lookup::Oracle<PublicKey>,
    /// The network's task.
    pub task: Handle<()>,
}

/// The largest message any validator of a committee of `validators` sends: a maximal block
/// message or simplex's largest vote or certificate, whichever is larger.
pub fn max_message_size(validators: usize) -> u32 {
    dainet_consensus::wire::max_message_size(validators, MAX_WIRE_BYTES)
}

/// The p2p namespace of a chain: connections are bound to it.
pub fn namespace(genesis: &Genesis) -> Vec<u8> {
    let mut out = b"dainet-p2p-v1/".to_vec();
    out.extend_from_slice(genesis.chain_id().0.as_bytes());
    out
}

/// Check that `addr` can be bound now (the network binds it again a moment later and would abort
/// the process if it could not).
pub fn check_listen(addr: SocketAddr) -> Result<(), NodeError> {
    std::net::TcpListener::bind(addr).map(drop).map_err(|source| NodeError::Listen { addr, source })
}

/// Start the authenticated network on `context`: listen on `listen`, keep connections to every
/// peer in `peers` (each validator's key and address; this node's own entry may be included),
/// and register the four consensus channels with `quotas`.
///
/// `validators` sizes the peer set and the message cap ([`max_message_size`]).
pub fn start_network<E>(
    context: &E,
    key: ed25519::PrivateKey,
    listen: SocketAddr,
    peers: &[(PublicKey, SocketAddr)],
    genesis: &Genesis,
    validators: usize,
    quotas: ChannelQuotas,
) -> Result<StartedNetwork<E>, NodeError>
where
    E: Spawner + Clock + CryptoRng + RuntimeNetwork + Resolver + Metrics,
{
    let me = key.public_key();
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: key,
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let max_peers = NonZeroUsize::new(validators.max(1)).unwrap_or(NonZeroUsize::MIN);
    let mut config = lookup::Config::local(
        handshake,
        &namespace(genesis),
        listen,
        max_peers,
        max_message_size(validators),
        NonZeroUsize::new(1_024).unwrap_or(NonZeroUsize::MIN),
    );
    // Validators may sit on loopback or a private LAN; the peer list is the allow-list.
    config.allow_private_ips = true;
    config.allow_dns = false;
    // One peer set, for good (no reconfiguration): do not budget mailboxes for four.
    config.tracked_peer_sets = NonZeroUsize::MIN;
    config.block_duration = Duration::from_secs(600);
    // A handful of validators: dial a missing one every 200 ms rather than every 500 ms, so a
    // (re)started node is connected within about a second.
    config.dial_frequency = Duration::from_millis(200);

    let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), config);
    let mut entries: Vec<(PublicKey, Address)> = peers.iter().map(|(k, a)| (k.clone(), Address::from(*a))).collect();
    if !peers.iter().any(|(k, _)| *k == me) {
        entries.push((me, Address::from(listen)));
    }
    let map = Map::try_from(entries)
        .map_err(|err| NodeError::Config { field: "peers", reason: format!("peer listed twice: {err}") })?;
    let _ = oracle.track(0, map);

    let per_second = |n: u32| Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
    let blocks =
        per_second(quotas.blocks_per_s).allow_burst(NonZeroU32::new(quotas.blocks_burst).unwrap_or(NonZeroU32::MIN));
    let votes = network.register(CHANNEL_VOTES, per_second(quotas.votes_per_s));
    let certificates = network.register(CHANNEL_CERTIFICATES, per_second(quotas.certificates_per_s));
    let resolver = network.register(CHANNEL_RESOLVER, per_second(quotas.resolver_per_s));
    let blocks = network.register(CHANNEL_BLOCKS, blocks);
    let handle = network.start();
    Ok(StartedNetwork { channels: Channels { votes, certificates, resolver, blocks }, oracle, task: handle })
}
