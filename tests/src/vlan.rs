//! 802.1Q tagging of a veth link without the kernel's VLAN driver: a two-instruction tc
//! program (tcx) pushes the tag on egress, another pops it on ingress.
//!
//! Kernels built without `CONFIG_VLAN_8021Q` (and without `act_vlan`) cannot make VLAN
//! sub-interfaces, but every kernel that runs XDP has the `bpf_skb_vlan_push`/`_pop` helpers.
//! The pushed tag is skb metadata; with the sender's `txvlan` offload off, the veth writes it
//! into the frame, so the peer's XDP program sees a real 802.1Q header. Ingress tc runs after
//! XDP, so the receiver's pop happens after the filter judged the tagged frame.

use std::os::fd::OwnedFd;

use anyhow::{Result, bail};

use crate::bpf::{
    BPF_PROG_TYPE_SCHED_CLS, BPF_TCX_EGRESS, BPF_TCX_INGRESS, EXIT, attach, call, load, mov64_imm,
};

/// Helpers (`enum bpf_func_id`).
const BPF_FUNC_SKB_VLAN_PUSH: i32 = 18;
const BPF_FUNC_SKB_VLAN_POP: i32 = 19;
/// `TCX_PASS`: the packet goes on.
const TCX_PASS: i32 = 0;
const ETH_P_8021Q: u16 = 0x8100;

/// Tags a link's frames with one VLAN id in both directions while alive: detached on drop
/// (closing the links), or with the interfaces when their namespaces go.
#[derive(Debug)]
pub struct VlanTagging {
    vid: u16,
    // tcx links live as long as their file descriptors.
    _links: Vec<OwnedFd>,
}

impl VlanTagging {
    /// On each `(namespace, interface)` end: push tag `vid` on egress, pop it on ingress.
    pub fn attach(vid: u16, ends: &[(&str, &str)]) -> Result<Self> {
        if !(1..=4094).contains(&vid) {
            bail!("VLAN id {vid} is not 1 to 4094");
        }
        let push = load(
            BPF_PROG_TYPE_SCHED_CLS,
            0,
            "lab_vlan_push",
            &[
                mov64_imm(2, i32::from(ETH_P_8021Q.to_be())),
                mov64_imm(3, i32::from(vid)),
                call(BPF_FUNC_SKB_VLAN_PUSH),
                mov64_imm(0, TCX_PASS),
                EXIT,
            ],
        )?;
        let pop = load(
            BPF_PROG_TYPE_SCHED_CLS,
            0,
            "lab_vlan_pop",
            &[call(BPF_FUNC_SKB_VLAN_POP), mov64_imm(0, TCX_PASS), EXIT],
        )?;
        let mut links = Vec::new();
        for &(ns, ifname) in ends {
            for (prog, attach_type) in [(&push, BPF_TCX_EGRESS), (&pop, BPF_TCX_INGRESS)] {
                links.push(attach(ns, ifname, prog, attach_type)?);
            }
        }
        Ok(Self { vid, _links: links })
    }

    pub fn vid(&self) -> u16 {
        self.vid
    }
}
