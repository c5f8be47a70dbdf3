# SPDX-License-Identifier: Apache-2.0
"""Record a routing trace for rcmoe-place from a PyTorch MoE model's router.

A forward hook on the router (the module whose output holds each token's expert scores, or its
chosen expert ids) appends every token's top-k expert ids to a binary trace in the format of
docs/placement.md: a 32-byte little-endian header (magic b"RCMOETRC", version 1, k, experts, a
reserved 0, the token count) followed by the ids as uint16, k per token.

    from record_routing import RoutingRecorder
    rec = RoutingRecorder(model.layers[3].mlp.gate, "layer3.trace", k=2, experts=64)
    for batch in loader:        # forward passes only; no_grad is fine
        model(batch)
    rec.close()                 # writes the token count into the header
    # then: rcmoe-place -d 8 -m 8 -o layer3.json layer3.trace

The router's output may be the logits ([tokens, experts], or [batch, seq, experts]: the top-k is
taken here), or anything else if `select` turns it into a [tokens, k] tensor of expert ids (for
routers that return (ids, weights, ...)). One recorder per layer: experts of different layers
are placed separately.
"""
import array
import struct
import sys

import torch

MAGIC = b"RCMOETRC"
VERSION = 1


class RoutingRecorder:
    def __init__(self, router, path, k, experts, select=None):
        if not 1 <= k <= min(64, experts) or experts > 65535:
            raise ValueError("need 1 <= k <= min(64, experts) and experts <= 65535")
        self.k, self.experts, self.select = k, experts, select
        self.tokens = 0
        self.file = open(path, "wb")
        self._header()
        self.handle = router.register_forward_hook(self._hook)

    def _header(self):
        self.file.write(struct.pack("<8sIIIIQ", MAGIC, VERSION, self.k, self.experts, 0,
                                    self.tokens))

    @torch.no_grad()
    def _hook(self, module, inputs, output):
        if self.select is not None:
            ids = self.select(output)
        else:
            logits = output[0] if isinstance(output, (tuple, list)) else output
            ids = logits.reshape(-1, logits.shape[-1]).topk(self.k, dim=-1).indices
        ids = ids.reshape(-1, self.k).to(device="cpu", dtype=torch.int32)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.experts):
            raise ValueError("expert id out of range 0..%d" % (self.experts - 1))
        # uint16, little-endian, k per token, in the order the router saw the tokens.
        out = array.array("H", ids.flatten().tolist())
        if sys.byteorder != "little":
            out.byteswap()
        self.file.write(out.tobytes())
        self.tokens += ids.shape[0]

    def close(self):
        self.handle.remove()
        self.file.seek(0)
        self._header()
        self.file.close()
