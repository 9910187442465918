//go:build vmguest

package ipvs

// KernelContractInVM runs the kernel contract against another client of
// the kernel (ipvs/genl's).
var KernelContractInVM = kernelContractInVM
