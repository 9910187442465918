# lvs-sync realserver on every real server of gate (direct routing) or
# ipip virtual services: the VIPs on lo (gate) or tunl0 (ipip) and the
# arp_ignore / arp_announce (and, for ipip, rp_filter) sysctls — the ARP
# problem solved by Nomad on each real server.
#
# Real servers are the client nodes whose config carries
#   client { meta { lvs_realserver = "true" } }
# It uses raw_exec: the sysctls are written under /proc/sys, which the exec
# driver's isolation mounts read-only. With -hold the task stays up and
# applies again every 30s (after a reboot, say). Stopping or updating the
# job leaves the VIPs up: the application on the node may still be serving
# them. To take them off, run `lvs-sync realserver -remove` with the same
# -vip and -mode.
#
#   nomad job run -var artifact=https://.../lvs-sync -var vips=10.10.10.60 nomad/realserver.nomad.hcl

variable "datacenters" {
  description = "Datacenters to run in."
  type        = list(string)
  default     = ["*"]
}

variable "realserver_meta" {
  description = "Client meta key set to \"true\" on real server nodes."
  type        = string
  default     = "lvs_realserver"
}

variable "artifact" {
  description = "URL of the static lvs-sync binary (linux/amd64), fetched with go-getter."
  type        = string
}

variable "vips" {
  description = "The VIPs these real servers serve, comma-separated."
  type        = string
}

variable "mode" {
  description = "Forwarding method of those virtual services: gate or ipip."
  type        = string
  default     = "gate"
}

job "lvs-realserver" {
  datacenters = var.datacenters
  type        = "system"

  constraint {
    attribute = "$${meta.${var.realserver_meta}}"
    value     = "true"
  }

  update {
    max_parallel = 1
  }

  group "realserver" {
    network {
      mode = "host"
    }

    task "realserver" {
      driver = "raw_exec"

      config {
        command = "local/lvs-sync"
        args    = ["realserver", "-vip", var.vips, "-mode", var.mode, "-hold"]
      }

      artifact {
        source      = var.artifact
        destination = "local/lvs-sync"
        mode        = "file"
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "10s"

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
