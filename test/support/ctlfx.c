#include "ctlfx.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void th_ctl_start(struct th_ctl *c, th_handler h, void *ud)
{
    uv_loop_init(&c->loop);
    assert_int_equal(th_start(&c->loop, h, ud, &c->srv), 0);
    c->kcfg.server = strdup(th_url(c->srv));
    assert_non_null(c->kcfg.server);
    assert_int_equal(gm_kube_new(&c->loop, &c->kcfg, NULL, &c->k), 0);
    assert_int_equal(gm_ctl_config_defaults(&c->cfg), 0);
    assert_int_equal(gm_ctl_new(&c->loop, c->k, &c->cfg, &c->ctl), 0);
    assert_int_equal(gm_ctl_start(c->ctl), 0);
    gm_ctl_lead(c->ctl);
}

void th_ctl_stop(struct th_ctl *c)
{
    gm_ctl_free(c->ctl);
    gm_kube_free(c->k);
    th_stop(c->srv);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    gm_ctl_config_free(&c->cfg);
    free(c->kcfg.server);
}
