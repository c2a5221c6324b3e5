//! The export format `dainet-ledger-export` (version 3): the genesis and every stored block as
//! one JSON document, for tools that do not speak the binary formats. (Version 2 added the
//! genesis name and treasury; version 3 `remove_member` bodies and evidence with its proof.)
//!
//! Guarantees: the same store gives the same bytes (fields in declaration order, body objects
//! with sorted keys); hashes and ids are hex; an `f64` field appears both as a number and as its
//! raw bits (`NAME` and `NAME_bits`; a non-finite number is `null`). Nothing is checked: a block
//! that does not decode is an error naming its height, and `verify` audits the rest.

use crate::block::Block;
use crate::codec::CodecError;
use crate::genesis::Genesis;
use crate::hash::to_hex;
use crate::identity::NodeId;
use crate::store::{BlockStore, StoreError};
use crate::tx::{EvidenceProof, TxBody};
use serde::Serialize;
use serde_json::{json, Value};

/// Why a store cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds no genesis.
    #[error("the store holds no genesis")]
    NoGenesis,
    /// The genesis does not decode.
    #[error("the genesis does not decode: {0}")]
    Genesis(CodecError),
    /// A block listed by the store was not there when read.
    #[error("block {height} vanished while reading")]
    Vanished {
        /// Its height.
        height: u64,
    },
    /// A block does not decode.
    #[error("block {height} does not decode: {source}")]
    Block {
        /// Its height.
        height: u64,
        /// Why.
        source: CodecError,
    },
}

/// The export document. Field order is the declaration order; body objects have sorted keys.
#[derive(Serialize)]
pub struct Export {
    format: &'static str,
    format_version: u32,
    genesis: GenesisJson,
    tip: Option<TipJson>,
    blocks: Vec<BlockJson>,
}

impl Export {
    /// How many blocks it holds.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }
}

#[derive(Serialize)]
struct GenesisJson {
    name: String,
    hash: String,
    chain_id: String,
    timestamp_ms: u64,
    founders: Vec<Value>,
    treasury: Option<String>,
}

#[derive(Serialize)]
struct TipJson {
    height: u64,
    hash: String,
}

#[derive(Serialize)]
struct BlockJson {
    height: u64,
    hash: String,
    prev_hash: String,
    tx_root: String,
    state_root: String,
    timestamp_ms: u64,
    txs: Vec<TxJson>,
}

#[derive(Serialize)]
struct TxJson {
    index: usize,
    hash: String,
    kind: &'static str,
    signer: String,
    nonce: u64,
    signature: String,
    body: Value,
}

/// The export document of `store`.
pub fn export<S: BlockStore>(store: &S) -> Result<Export, ExportError> {
    let bytes = store.genesis()?.ok_or(ExportError::NoGenesis)?;
    let genesis = Genesis::decode(&bytes).map_err(ExportError::Genesis)?;
    let mut blocks = Vec::new();
    for height in store.heights()? {
        let bytes = store.block(height)?.ok_or(ExportError::Vanished { height })?;
        let block = Block::decode(&bytes).map_err(|source| ExportError::Block { height, source })?;
        blocks.push(block_json(&block));
    }
    Ok(Export {
        format: "dainet-ledger-export",
        format_version: 3,
        genesis: GenesisJson {
            name: genesis.name.clone(),
            hash: genesis.hash().to_string(),
            chain_id: genesis.chain_id().0.to_string(),
            timestamp_ms: genesis.timestamp_ms,
            founders: genesis
                .founders
                .iter()
                .map(|f| json!({"id": f.id.to_string(), "name": f.name, "validator": f.validator}))
                .collect(),
            treasury: genesis.treasury.map(|t| t.to_string()),
        },
        tip: store.tip()?.map(|t| TipJson { height: t.height, hash: t.hash.to_string() }),
        blocks,
    })
}

fn block_json(block: &Block) -> BlockJson {
    BlockJson {
        height: block.height,
        hash: block.hash().to_string(),
        prev_hash: block.prev_hash.to_string(),
        tx_root: block.tx_root.to_string(),
        state_root: block.state_root.to_string(),
        timestamp_ms: block.timestamp_ms,
        txs: block
            .txs
            .iter()
            .enumerate()
            .map(|(index, tx)| TxJson {
                index,
                hash: tx.hash().to_string(),
                kind: tx.body.kind(),
                signer: tx.signer.to_string(),
                nonce: tx.nonce,
                signature: tx.signature.to_string(),
                body: body_json(&tx.body),
            })
            .collect(),
    }
}

/// A body's fields: hashes and ids as hex, `f64` bit fields both as the number and as the raw
/// bits (`NAME` and `NAME_bits`; a non-finite number is `null`).
fn body_json(body: &TxBody) -> Value {
    let ids = |v: &[NodeId]| v.iter().map(NodeId::to_string).collect::<Vec<_>>();
    match body {
        TxBody::RegisterMember { member, name, validator } => {
            json!({"member": member.to_string(), "name": name, "validator": validator})
        }
        TxBody::RegisterDevice { device, member } => {
            json!({"device": device.to_string(), "member": member.to_string()})
        }
        TxBody::DeployPolicy { code_hash } => json!({"code_hash": code_hash.to_string()}),
        TxBody::OpenRound { round, task, participants, strategy, deadline_ms } => json!({
            "round": round, "task": task, "participants": ids(participants), "strategy": strategy,
            "deadline_ms": deadline_ms,
        }),
        TxBody::CommitUpdate { round, node, update_hash, examples, norm_bits } => json!({
            "round": round, "node": node.to_string(), "update_hash": update_hash.to_string(),
            "examples": examples, "norm": f64::from_bits(*norm_bits), "norm_bits": norm_bits,
        }),
        TxBody::CommitAggregate { round, aggregate_hash, participants, metrics } => json!({
            "round": round, "aggregate_hash": aggregate_hash.to_string(), "participants": ids(participants),
            "metrics": metrics
                .iter()
                .map(|m| json!({"name": m.name, "value": m.value(), "value_bits": m.value_bits}))
                .collect::<Vec<_>>(),
        }),
        TxBody::Contribution { round, node, score } => {
            json!({"round": round, "node": node.to_string(), "score": score})
        }
        TxBody::Reward { node, amount } => json!({"node": node.to_string(), "amount": amount}),
        TxBody::DataUse { dataset_id, purpose, consent_ref } => {
            json!({"dataset_id": dataset_id, "purpose": purpose, "consent_ref": consent_ref})
        }
        TxBody::PrivacySpend { round, epsilon_bits, delta_bits } => json!({
            "round": round,
            "epsilon": f64::from_bits(*epsilon_bits), "epsilon_bits": epsilon_bits,
            "delta": f64::from_bits(*delta_bits), "delta_bits": delta_bits,
        }),
        TxBody::RemoveMember { member } => json!({"member": member.to_string()}),
        TxBody::Evidence { node, proof: EvidenceProof::DoubleSign { first, second } } => json!({
            "node": node.to_string(),
            "proof": {"kind": "double_sign", "first": to_hex(first), "second": to_hex(second)},
        }),
    }
}
