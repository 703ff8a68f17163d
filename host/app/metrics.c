/* The host's own metrics: build info, reload outcomes, and the families of subsystems that
 * should be listed before their first sample. */
#include "app/app.h"
#include "luar_version.h"
#include "metrics/metrics.h"
#include "ratelimit/ratelimit.h"

#include <stddef.h>

static luar_metric_t *reloads;

void luar_app_metrics_init(void)
{
    static const char *version_label[] = {"version"};
    static const char *outcome_label[] = {"outcome"};
    static const char *version_value[] = {LUAR_VERSION};
    luar_metric_t *info = NULL;
    if (luar_metrics_register(LUAR_METRIC_GAUGE, "luar_build_info",
                              "Luar build information; always 1.", version_label, 1, NULL, 0,
                              &info, NULL) == 0)
        luar_metric_set(info, version_value, 1);
    if (luar_metrics_register(LUAR_METRIC_COUNTER, "luar_script_reloads_total",
                              "Script loads and reloads by outcome (success, failure).",
                              outcome_label, 1, NULL, 0, &reloads, NULL) == 0) {
        static const char *success[] = {"success"}, *failure[] = {"failure"};
        /* Both series exist from the start, so a rate() over them is defined. */
        luar_metric_add(reloads, success, 0);
        luar_metric_add(reloads, failure, 0);
    }
    luar_ratelimit_metrics_init();
}

void luar_app_count_reload(int ok)
{
    static const char *success[] = {"success"}, *failure[] = {"failure"};
    if (reloads)
        luar_metric_add(reloads, ok ? success : failure, 1);
}
