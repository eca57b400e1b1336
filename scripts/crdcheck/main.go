// crdcheck validates crd/gpumodepolicy.yaml offline the way the apiserver
// does (structural schema, CEL compilation and cost), then prunes, defaults
// and validates policies against it (OpenAPI + CEL), printing each error.
// It is its own module; from the repository root:
//
//	cd scripts/crdcheck && go run . ../../crd/gpumodepolicy.yaml ../../manifests/examples/*.yaml
package main

import (
	"context"
	"fmt"
	"os"

	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	v1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	sigyaml "sigs.k8s.io/yaml"
)

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var crd v1.CustomResourceDefinition
	if err := sigyaml.Unmarshal(data, &crd); err != nil {
		panic(err)
	}
	scheme := runtime.NewScheme()
	v1.AddToScheme(scheme)
	apiext.AddToScheme(scheme)
	var internal apiext.CustomResourceDefinition
	if err := scheme.Convert(&crd, &internal, nil); err != nil {
		panic(err)
	}
	internal.Status.StoredVersions = []string{"v1alpha1"}
	errs := validation.ValidateCustomResourceDefinition(context.TODO(), &internal)
	for _, e := range errs {
		fmt.Println("CRD:", e.Error())
	}
	if len(errs) != 0 {
		os.Exit(1)
	}
	var props *apiext.JSONSchemaProps
	if internal.Spec.Versions[0].Schema != nil {
		props = internal.Spec.Versions[0].Schema.OpenAPIV3Schema
	} else {
		props = internal.Spec.Validation.OpenAPIV3Schema
	}
	st, err := schema.NewStructural(props)
	if err != nil {
		panic(err)
	}
	sv, _, err := apiservervalidation.NewSchemaValidator(props)
	if err != nil {
		panic(err)
	}
	celv := cel.NewValidator(st, true, celconfig.PerCallLimit)
	bad := 0
	for _, f := range os.Args[2:] {
		b, err := os.ReadFile(f)
		if err != nil {
			panic(err)
		}
		var obj map[string]interface{}
		jb, err := sigyaml.YAMLToJSON(b)
		if err == nil {
			err = kjson.Unmarshal(jb, &obj)
		}
		if err != nil {
			fmt.Printf("%s: yaml: %v\n", f, err)
			bad++
			continue
		}
		pruning.PruneWithOptions(obj, st, true, schema.UnknownFieldPathOptions{})
		defaulting.Default(obj, st)
		var all field.ErrorList
		all = append(all, apiservervalidation.ValidateCustomResource(nil, obj, sv)...)
		all = append(all, listtype.ValidateListSetsAndMaps(nil, st, obj)...)
		if celv != nil {
			e, _ := celv.Validate(context.TODO(), nil, st, obj, nil, celconfig.RuntimeCELCostBudget)
			all = append(all, e...)
		}
		if len(all) == 0 {
			out, _ := sigyaml.Marshal(obj)
			if os.Getenv("SHOW") != "" {
				fmt.Printf("%s: OK\n%s\n", f, out)
			} else {
				fmt.Printf("%s: OK\n", f)
			}
		} else {
			bad++
			for _, e := range all {
				fmt.Printf("%s: ERR %s\n", f, e.Error())
			}
		}
	}
	_ = bad
}
