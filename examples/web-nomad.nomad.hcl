# An application behind lvs-sync on a Nomad cluster without Consul: three
# instances of a web server, registered in Nomad's own service catalog
# (provider = "nomad") with an HTTP check that Nomad's clients run, served
# by examples/lvs-sync-nomad.hcl's "web" virtual service.
#
# How lvs-sync reads their health: an instance serves while its
# allocation runs and every check of its service passes; a failing check
# takes it out. Nomad keeps no check status in its service catalog, so the
# results are read per allocation (catalog/nomad/doc.go says how, and what
# it costs).
#
# The tag lvs-weight=N sets the instance's IPVS weight (1 without it), as
# a Consul service's Weights would; lvs-upper-threshold=N and
# lvs-lower-threshold=N its connection thresholds, as Consul's meta.
#
# Port 80 is static, for the gate virtual service on :80 (gate cannot
# translate ports); with a dynamic port, use masq. The server listens on
# every address, the VIP's too (lvs-sync realserver puts it on lo).
#
#   nomad job run examples/web-nomad.nomad.hcl
#   nomad job run -var version=2 examples/web-nomad.nomad.hcl   # a rolling update

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "version" {
  description = "Changing it rolls the allocations one by one."
  type        = string
  default     = "1"
}

variable "command" {
  description = "The server to run; it must answer HTTP on $NOMAD_PORT_http."
  type        = string
  default     = "python3"
}

job "web-nomad" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "2s"
    healthy_deadline = "1m"
    auto_revert      = true
  }

  group "web" {
    count = 3

    network {
      port "http" {
        static = 80
      }
    }

    service {
      name     = "web"
      provider = "nomad"
      port     = "http"
      tags     = ["prod", "lvs-weight=1"]

      check {
        name     = "web http"
        type     = "http"
        path     = "/"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = var.command
        args    = ["-m", "http.server", "$${NOMAD_PORT_http}"]
      }

      env {
        VERSION = var.version
      }

      # Deregistered from Nomad's catalog first, stopped this much later:
      # lvs-sync drains the real in between.
      shutdown_delay = "3s"
      kill_timeout   = "5s"

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
