package e2e

// keepalivedEnv is set in the guest when the boot has keepalived
// (TestKeepalivedInKernel's); the guest test needs it.
const keepalivedEnv = "LVS_KEEPALIVED"
