//! A test driver: one server and n clients, with messages passed by hand on a virtual clock
//! (raft-rs's `Network`, quinn's `Pair`). Faults are data: clients that go silent from a
//! stage on, and hooks that may drop, alter, duplicate or inject messages in either
//! direction.

use super::{
    ClientMessage, ParticipantId, Recipient, SecAggClient, SecAggConfig, SecAggError, SecAggServer, ServerMessage,
    Stage, Time, UnmaskedSum,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A message as it crossed the network (after the hooks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Traced {
    /// Server to client.
    Down(Recipient, ServerMessage),
    /// Client to server.
    Up(ParticipantId, ClientMessage),
}

/// Rewrites one upload into any number of uploads (none drops it).
pub type UploadHook = Box<dyn FnMut(ParticipantId, ClientMessage) -> Vec<(ParticipantId, ClientMessage)>>;
/// Rewrites one download into any number of downloads (none drops it).
pub type DownloadHook = Box<dyn FnMut(Recipient, ServerMessage) -> Vec<(Recipient, ServerMessage)>>;

/// The 32-byte seed of stream `who` under test seed `seed`.
pub fn seed_bytes(seed: u64, who: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&seed.to_le_bytes());
    out[8..16].copy_from_slice(&who.to_le_bytes());
    out
}

/// One server, its clients, and the faults to apply.
pub struct Network {
    pub server: SecAggServer,
    pub clients: BTreeMap<ParticipantId, SecAggClient>,
    pub now: Time,
    /// Clients that neither read nor answer from the given stage on.
    pub silent_from: BTreeMap<ParticipantId, Stage>,
    pub on_upload: Option<UploadHook>,
    pub on_download: Option<DownloadHook>,
    /// Every delivered message, in order.
    pub trace: Vec<Traced>,
    /// Refusals returned by the server's `handle_message`.
    pub server_errors: Vec<(ParticipantId, SecAggError)>,
    /// Refusals returned by clients' `handle_message`.
    pub client_errors: Vec<(ParticipantId, SecAggError)>,
    /// Each client's quantised plaintext `[w, clipped, w·x_q]`, copied at construction.
    pub plaintexts: BTreeMap<ParticipantId, Vec<u32>>,
    /// Wall time spent in clients' `handle_message`, per client (for the cost benchmark).
    pub client_time: BTreeMap<ParticipantId, Duration>,
    /// Wall time spent in the server's handlers.
    pub server_time: Duration,
}

impl Network {
    /// Clients `0..inputs.len()` with `(input, weight)` each; seeds derived from `seed`.
    pub fn new(config: &SecAggConfig, inputs: &[(Vec<f32>, u32)], round: u32, seed: u64) -> Self {
        let ids: Vec<ParticipantId> = (0..inputs.len() as u32).map(ParticipantId).collect();
        let server = SecAggServer::new(config.clone(), ids.clone(), round, seed_bytes(seed, u64::MAX)).unwrap();
        let clients = ids
            .iter()
            .zip(inputs)
            .map(|(&id, (x, w))| {
                let client =
                    SecAggClient::new(config.clone(), id, round, x, *w, seed_bytes(seed, u64::from(id.0))).unwrap();
                (id, client)
            })
            .collect::<BTreeMap<_, _>>();
        let plaintexts = clients.iter().map(|(&id, c)| (id, c.plaintext.clone())).collect();
        Self {
            plaintexts,
            client_time: BTreeMap::new(),
            server_time: Duration::ZERO,
            server,
            clients,
            now: Time(0),
            silent_from: BTreeMap::new(),
            on_upload: None,
            on_download: None,
            trace: Vec::new(),
            server_errors: Vec::new(),
            client_errors: Vec::new(),
        }
    }

    /// Makes `ids` silent from `stage` on.
    pub fn silence(&mut self, ids: &[u32], stage: Stage) {
        for &id in ids {
            self.silent_from.insert(ParticipantId(id), stage);
        }
    }

    fn silent(&self, id: ParticipantId, stage: Stage) -> bool {
        self.silent_from.get(&id).is_some_and(|&s| stage >= s)
    }

    /// Runs the round to its result: deliver, answer, and jump the clock to the next
    /// deadline whenever nothing is in flight.
    pub fn run(&mut self) -> Result<UnmaskedSum, SecAggError> {
        self.server.handle_start(self.now);
        for _ in 0..1000 {
            let downs: Vec<(Recipient, ServerMessage)> = std::iter::from_fn(|| self.server.poll_message()).collect();
            let mut delivered = Vec::new();
            for (to, msg) in downs {
                match self.on_download.as_mut() {
                    Some(hook) => delivered.extend(hook(to, msg)),
                    None => delivered.push((to, msg)),
                }
            }
            let mut uploads = Vec::new();
            let quiet = delivered.is_empty();
            for (to, msg) in delivered {
                if self.silent(to, msg.stage()) {
                    continue;
                }
                self.trace.push(Traced::Down(to, msg.clone()));
                let Some(client) = self.clients.get_mut(&to) else { continue };
                let start = Instant::now();
                let answer = client.handle_message(self.now, msg);
                *self.client_time.entry(to).or_default() += start.elapsed();
                match answer {
                    Ok(Some(reply)) => match self.on_upload.as_mut() {
                        Some(hook) => uploads.extend(hook(to, reply)),
                        None => uploads.push((to, reply)),
                    },
                    Ok(None) => {}
                    Err(e) => self.client_errors.push((to, e)),
                }
            }
            for (from, msg) in uploads {
                self.trace.push(Traced::Up(from, msg.clone()));
                let start = Instant::now();
                let answer = self.server.handle_message(self.now, from, msg);
                self.server_time += start.elapsed();
                if let Err(e) = answer {
                    self.server_errors.push((from, e));
                }
            }
            if let Some(result) = self.server.poll_result() {
                return result;
            }
            if quiet {
                let deadline = self.server.poll_timeout().expect("an unfinished round has a deadline");
                self.now = self.now.max(deadline);
                let start = Instant::now();
                self.server.handle_timeout(self.now);
                self.server_time += start.elapsed();
            }
        }
        panic!("the round did not finish");
    }

    /// The quantised plaintexts `[w, clipped, w·x_q]` of `ids`, summed modulo 2^32.
    pub fn plaintext_sum(&self, ids: &[ParticipantId]) -> Vec<u32> {
        let len = self.plaintexts.values().next().unwrap().len();
        let mut sum = vec![0u32; len];
        for id in ids {
            for (s, v) in sum.iter_mut().zip(&self.plaintexts[id]) {
                *s = s.wrapping_add(*v);
            }
        }
        sum
    }
}
