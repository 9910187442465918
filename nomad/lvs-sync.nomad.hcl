# lvs-sync on every director, as a Nomad system job.
#
# Directors are the client nodes whose config carries the meta flag
#   client { meta { lvs_director = "true" } }
# (its name is the director_meta variable). The job runs with the exec
# driver in the host's network namespace with one added capability,
# NET_ADMIN, which IPVS and the VIP link need: the exec plugin must allow it,
#   plugin "exec" { config { allow_caps = [ ...the defaults..., "net_admin" ] } }
# The host needs the ip_vs module (and ip_vs_<scheduler> for the schedulers
# used); lvs-sync loads nothing itself.
#
# The state file (which virtual services lvs-sync made) must outlive the
# allocation, or a new one would forget them and never delete a service
# removed from the config meanwhile. It lives on a Nomad host volume that
# each director's client config provides:
#   client {
#     host_volume "lvs-sync" {
#       path      = "/var/lib/lvs-sync"
#       read_only = false
#     }
#   }
# (its name is the state_volume variable), mounted at /var/lib/lvs-sync,
# where the config's director.state_file is by default. lvs-sync locks the
# file: should two allocations ever overlap on one director, the second
# refuses to start until the first has gone.
#
# The local API listens on loopback only: status, metrics and /v1/health
# are for this host. The service is registered with address 127.0.0.1, so
# that the Consul agent on the director runs its HTTP check there.
#
# The config comes from Consul KV (config_key); editing the key re-renders
# the template and sends SIGHUP, which lvs-sync applies as a diff without a
# restart, or rejects with its diagnostics. A Consul token, if ACLs are on,
# is read from the Nomad variable nomad/jobs/lvs-sync (key consul_token),
# which the job's workload identity may read.
#
#   nomad job run -var artifact=https://.../lvs-sync nomad/lvs-sync.nomad.hcl

variable "datacenters" {
  description = "Datacenters to run in."
  type        = list(string)
  default     = ["*"]
}

variable "director_meta" {
  description = "Client meta key set to \"true\" on director nodes."
  type        = string
  default     = "lvs_director"
}

variable "artifact" {
  description = "URL of the static lvs-sync binary (linux/amd64), fetched with go-getter."
  type        = string
}

variable "config_key" {
  description = "Consul KV key holding lvs-sync's HCL config."
  type        = string
  default     = "lvs-sync/config"
}

variable "api_port" {
  description = "Port of lvs-sync's local API, registered in Consul with its /v1/health check."
  type        = number
  default     = 9337
}

variable "state_volume" {
  description = "Name of the client host_volume that keeps lvs-sync's state file across allocations."
  type        = string
  default     = "lvs-sync"
}

variable "extra_args" {
  description = "More arguments to lvs-sync run, such as [\"-log-level\", \"debug\"] or [\"-dry-run\"]."
  type        = list(string)
  default     = []
}

job "lvs-sync" {
  datacenters = var.datacenters
  type        = "system"

  constraint {
    attribute = "$${meta.${var.director_meta}}"
    value     = "true"
  }

  # One director at a time, each healthy (its /v1/health check passing)
  # before the next is replaced.
  update {
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "2m"
  }

  group "director" {
    network {
      mode = "host"

      port "api" {
        static = var.api_port
      }
    }

    # The state file's directory, kept by the director across allocations.
    volume "state" {
      type      = "host"
      source    = var.state_volume
      read_only = false
    }

    service {
      name     = "lvs-sync"
      provider = "consul"
      port     = "api"
      # Where the API listens; the check below follows it (Consul's agent
      # on this host runs the check).
      address = "127.0.0.1"
      tags    = ["lvs-director"]

      check {
        name     = "lvs-sync health"
        type     = "http"
        path     = "/v1/health"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "lvs-sync" {
      driver = "exec"

      config {
        command = "local/lvs-sync"
        args    = concat(["run", "-config", "local/lvs-sync.hcl", "-api", "127.0.0.1:${NOMAD_PORT_api}"], var.extra_args)
        cap_add = ["net_admin"]
      }

      volume_mount {
        volume      = "state"
        destination = "/var/lib/lvs-sync"
        read_only   = false
      }

      artifact {
        source      = var.artifact
        destination = "local/lvs-sync"
        mode        = "file"
      }

      template {
        data          = "{{ key \"${var.config_key}\" }}"
        destination   = "local/lvs-sync.hcl"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      template {
        data        = <<-EOT
          {{- range nomadVarList "nomad/jobs/lvs-sync" }}{{ with nomadVar .Path }}{{ if .consul_token }}
          CONSUL_HTTP_TOKEN={{ .consul_token }}
          {{- end }}{{ end }}{{ end }}
        EOT
        destination = "secrets/consul.env"
        env         = true
      }

      # SIGTERM leaves the kernel table as it is (the fail-safe default).
      kill_signal  = "SIGTERM"
      kill_timeout = "10s"

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
