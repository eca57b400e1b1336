/* gpumode-agent: runs inside the short-lived privileged helper pod on a GPU
 * node and brings the GPUs to a mode with nvidia-smi. Synchronous on
 * purpose: it does a handful of commands in order and exits.
 *
 * Result (stdout and the termination log, one JSON object, < 4096 bytes):
 *   {"ok": bool,
 *    "command": "probe" | "apply" | "reboot" | "",
 *    "mode": "full" | "vgpu" | "mig",              apply only
 *    "changed": bool,                              apply only
 *    "gpus": [{"index": 0, "uuid": "GPU-...", "name": "...",
 *              "busId": "...", "pciDeviceId": "0x20B010DE",
 *              "memoryMiB": 40960,                 probe only
 *              "migCapable": bool,
 *              "migCurrent": "Enabled" | "Disabled" | "[N/A]",
 *              "migPending": "Enabled" | "Disabled" | "[N/A]",
 *              "instances": {"1g.10gb": 7},        GPU instances by profile
 *              "gpuInstances": [{"id", "profile", "profileId", "start",
 *                                "size", "computeInstances"}]  probe only
 *             }],
 *    "processes": [{"pid", "gpuUuid", "usedMemoryMiB"}],  probe only
 *    "processCount": N,                                   probe only
 *    "needs": "none" | "reset" | "reboot",
 *    "reason": "GPUInUse" | ...,                   only when ok is false
 *    "message": "..."}                             nvidia-smi's own words
 * When the full form would pass the limit, instance and process details go
 * first, then the message is cut (ending "..."), then GPU uuids and names,
 * then the GPU list ("gpusOmitted": true).
 * Exit: 0 ok, 1 failed, 2 usage error (still with a result, reason
 * InvalidArgument). */
#include "agent/cli.h"

int main(int argc, char **argv)
{
    return gm_agent_main(argc, argv, NULL);
}
